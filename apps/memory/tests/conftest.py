"""Fixtures of the memory tests: a small store helper with sensible defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.memory.services import memory_store

AGENT = "agent:sofia"
DAO = "microdao:7"


@pytest.fixture(autouse=True)
def _fresh_model_snapshot(request):
    """The embedding-model snapshot is process-local; rolled-back tests must not leak into
    it. A transactional test before this one may have flushed the built-in model rows.
    """
    from apps.memory.selectors import invalidate_models

    names = set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    transactional = bool({"transactional_db", "api"} & names) or bool(marker and marker.kwargs.get("transaction"))
    if transactional or marker or "db" in names:
        from apps.memory.services import embedding_models_ensure_builtin

        request.getfixturevalue("transactional_db" if transactional else "db")
        embedding_models_ensure_builtin()
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
