"""Schemathesis hooks for the fuzz test (daarion/tests/test_fuzz.py), loaded through
SCHEMATHESIS_HOOKS: a registry apply is only ever a dry run, so fuzzing plans changes and
never makes them."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if context.operation is not None and context.operation.path.endswith("/apply"):
        return {**(query or {}), "dry_run": "1"}
    return query
