"""Calls and spend per service token, for the token admin: usage records live in apps/llm,
which daarion must not import, so the LLM app registers its reader here (daarion.infra.hooks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daarion.infra.hooks import Hook

TokenUsageReader = Callable[..., dict[int, dict[str, Any]]]

reader: Hook[TokenUsageReader] = Hook("a per-token usage reader")


def token_usage(token_id: int, *, days: int = 30) -> str:
    """`N calls, $X` over the last `days`, or "-" when no reader is registered."""
    if reader.function is None:
        return "-"
    found = reader.function(token_ids=[token_id], days=days).get(token_id)
    if not found:
        return "no calls"
    return f"{found['calls']} calls, {found['cost'].normalize():f} USD"
