"""The character document (the shape of an elizaOS character file): its schema and the
fields an import reads from it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from jsonschema import Draft202012Validator

_STRINGS = {"type": "array", "items": {"type": "string"}}
_TEXT_OR_STRINGS = {"oneOf": [{"type": "string"}, _STRINGS]}

# Loose where elizaOS is loose (extra keys are kept), strict where the prompt builder reads.
CHARACTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "id": {"type": "string"},
        "agent_id": {"type": "string"},
        "username": {"type": "string"},
        "system": {"type": "string"},
        "bio": _TEXT_OR_STRINGS,
        "lore": _STRINGS,
        "knowledge": {"type": "array"},
        "topics": _STRINGS,
        "adjectives": _STRINGS,
        "postExamples": _STRINGS,
        "style": {
            "type": "object",
            "properties": {"all": _STRINGS, "chat": _STRINGS, "post": _STRINGS},
        },
        "messageExamples": {
            "type": "array",
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "user": {"type": "string"},
                        "name": {"type": "string"},
                        "content": {
                            "type": "object",
                            "properties": {"text": {"type": "string"}},
                            "required": ["text"],
                        },
                    },
                    "required": ["content"],
                },
            },
        },
        "settings": {
            "type": "object",
            "properties": {
                "secrets": {"type": "object", "additionalProperties": {"type": "string"}},
                "model": {"type": "string", "minLength": 1},
                "microdao_id": {"type": "string", "minLength": 1},
                "enabled": {"type": "boolean"},
                "max_tool_steps": {"type": "integer", "minimum": 0},
                "tool_mode": {"enum": ["native", "text"]},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "history_turns": {"type": "integer", "minimum": 0},
                "history_tokens": {"type": "integer", "minimum": 0},
                "memory": {
                    "type": "object",
                    "properties": {
                        "recall_limit": {"type": "integer", "minimum": 0},
                        "kinds": _STRINGS,
                    },
                },
            },
        },
    },
    "required": ["name"],
}

_validator = Draft202012Validator(CHARACTER_SCHEMA)


def character_errors(document: Any, *, prefix: str = "character") -> list[dict[str, str]]:
    """Every schema violation of `document` as `{"path", "message"}`, in document order."""
    errors = sorted(_validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [{"path": ".".join([prefix, *map(str, err.absolute_path)]), "message": err.message} for err in errors]


def agent_id_for_name(name: str) -> str:
    """A stable agent id from a character name: 'Sofia-Prime' -> 'agent:sofia-prime'.

    Accents are folded to ASCII and anything else becomes '-', so a re-import of the same
    file always lands on the same agent.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:62]
    return f"agent:{slug or 'unnamed'}"


def bio_text(character: dict[str, Any]) -> str:
    bio = character.get("bio") or ""
    return " ".join(bio) if isinstance(bio, list) else str(bio)


def stored_character(document: dict[str, Any]) -> dict[str, Any]:
    """The document as kept on the agent: everything but the secrets (kept encrypted apart)."""
    kept = dict(document)
    settings = dict(kept.get("settings") or {})
    settings.pop("secrets", None)
    if settings:
        kept["settings"] = settings
    else:
        kept.pop("settings", None)
    return kept
