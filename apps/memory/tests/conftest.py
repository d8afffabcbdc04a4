"""Fixtures of the memory tests: a small store helper with sensible defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.memory.services import memory_store

AGENT = "agent:sofia"
DAO = "microdao:7"


@pytest.fixture(autouse=True)
def _fresh_model_snapshot():
    """The embedding-model snapshot is process-local; rolled-back tests must not leak into it."""
    from apps.memory.selectors import invalidate_models

    invalidate_models()
    yield
    invalidate_models()


@pytest.fixture
def remember(db) -> Callable:
    """remember(text_or_content, **fields) -> MemoryEntry (stored, embedding pending)."""

    def _remember(content, **fields):
        if isinstance(content, str):
            content = {"text": content}
        fields.setdefault("agent_id", AGENT)
        fields.setdefault("microdao_id", DAO)
        fields.setdefault("kind", "kb")
        entry, _ = memory_store(content=content, **fields)
        return entry

    return _remember
