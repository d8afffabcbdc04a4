"""Derives the searchable text of a memory entry from the JSON content it was stored with."""

from __future__ import annotations

import json
from typing import Any

# Content keys that hold the text itself, in order of preference.
_TEXT_KEYS = ("text", "content", "summary", "body", "message")


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, (int, float, bool)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def derive_text(kind: str, content: dict[str, Any]) -> str:
    """A conversation `{user_message, agent_reply}` becomes both sides labelled; a content with
    a text-like key is that text (other keys as `key: value` lines after it); anything else is
    its keys and values, one per line.
    """
    lines: list[str] = []
    used: set[str] = set()
    if "user_message" in content or "agent_reply" in content:
        for key, label in (("user_message", "User"), ("agent_reply", "Agent")):
            value: str | None = _scalar(content.get(key))
            if value:
                lines.append(f"{label}: {value}")
            used.add(key)
    else:
        for key in _TEXT_KEYS:
            value = content.get(key)
            if isinstance(value, str) and value.strip():
                speaker = content.get("speaker")
                lines.append(f"{speaker}: {value.strip()}" if isinstance(speaker, str) and speaker else value.strip())
                used.update({key, "speaker"})
                break
    for key, value in content.items():
        if key in used:
            continue
        rendered = _scalar(value)
        if rendered:
            lines.append(f"{key}: {rendered}")
    return "\n".join(lines).strip()
