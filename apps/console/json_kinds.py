"""What a JSON field must be, per kind, for the editor's validation as you type: the same
checks the services run on save (one validation path)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from apps.agents.character import character_errors
from apps.tools.contracts import schema_problems
from daarion.infra.storable import json_problem

Problem = dict[str, str]


def _character(value: Any) -> list[Problem]:
    if not isinstance(value, dict):
        return [{"path": "$", "message": "must be a JSON object (the character document)"}]
    # The stored character need not repeat the name (the agent has one), as agent_validate.
    return character_errors({"name": "-", **value}, prefix="$")


def _tool_schema(must_be_object: bool) -> Callable[[Any], list[Problem]]:
    def check(value: Any) -> list[Problem]:
        if value is None and not must_be_object:
            return []  # no output schema: results are not checked
        return [{"path": "$", "message": message} for message in schema_problems(value, must_be_object=must_be_object)]

    return check


def _object(value: Any) -> list[Problem]:
    return [] if isinstance(value, dict) else [{"path": "$", "message": "must be a JSON object"}]


def _string_map(value: Any) -> list[Problem]:
    if not isinstance(value, dict):
        return [{"path": "$", "message": "must be a JSON object of strings"}]
    return [{"path": f"$.{k}", "message": "must be a string"} for k, v in value.items() if not isinstance(v, str)]


def _strings(value: Any) -> list[Problem]:
    if not isinstance(value, list):
        return [{"path": "$", "message": "must be a JSON array of strings"}]
    return [{"path": f"$[{i}]", "message": "must be a string"} for i, v in enumerate(value) if not isinstance(v, str)]


KINDS: dict[str, Callable[[Any], list[Problem]]] = {
    "agent.character": _character,
    "tool.input_schema": _tool_schema(True),
    "tool.output_schema": _tool_schema(False),
    "object": _object,
    "string-map": _string_map,
    "strings": _strings,
    "json": lambda value: [],
}


def json_problems(*, kind: str, text: str) -> list[Problem]:
    """Why `text` is not acceptable for a field of `kind` (empty: it is)."""
    if not text.strip():
        return [] if kind in ("json", "tool.output_schema") else [{"path": "$", "message": "enter a JSON value"}]
    try:
        value = json.loads(text)
    except ValueError as exc:
        return [{"path": "$", "message": f"not JSON: {exc}"}]
    stored = json_problem(value, "$")
    if stored is not None:
        return [{"path": stored[0], "message": stored[1]}]
    return KINDS.get(kind, KINDS["json"])(value)
