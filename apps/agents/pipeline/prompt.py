"""The turn's prompt: system prompt, character, context, memories, recent channel messages,
the session's history, then the user's message."""

from __future__ import annotations

import json
from typing import Any

from apps.agents.pipeline.events import PreparedTurn
from apps.agents.selectors import Blueprint

MAX_CONTEXT_MESSAGES = 50


def _lines(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values] if values.strip() else []
    if isinstance(values, list):
        return [str(v) for v in values if isinstance(v, str) and v.strip()]
    return []


def character_prompt(blueprint: Blueprint) -> str:
    """The character document as prompt text (elizaOS fields the model can use)."""
    c = blueprint.character or {}
    parts: list[str] = [f"You are {blueprint.name}."]
    for title, key in (("About you", "bio"), ("Your background", "lore"), ("Topics you know", "topics")):
        lines = _lines(c.get(key))
        if lines:
            parts.append(f"{title}:\n" + "\n".join(f"- {line}" for line in lines))
    adjectives = _lines(c.get("adjectives"))
    if adjectives:
        parts.append("You are " + ", ".join(adjectives) + ".")
    style = c.get("style")
    if not isinstance(style, dict):
        style = {}
    style_lines = _lines(style.get("all")) + _lines(style.get("chat"))
    if style_lines:
        parts.append("Style:\n" + "\n".join(f"- {line}" for line in style_lines))
    examples = c.get("messageExamples")
    if not isinstance(examples, list):
        examples = []
    rendered = []
    for exchange in examples[:3]:
        if not isinstance(exchange, list):
            continue
        rendered.append(
            "\n".join(
                f"{m.get('user') or m.get('name') or 'user'}: {(m.get('content') or {}).get('text', '')}"
                for m in exchange
                if isinstance(m, dict)
            )
        )
    if rendered:
        parts.append("Example exchanges:\n" + "\n\n".join(rendered))
    return "\n\n".join(parts)


def _text_tools_prompt(tools: list[Any]) -> str:
    described = "\n".join(
        f"- {t.id}: {t.description or t.name}. Input JSON schema: {json.dumps(t.input_schema, ensure_ascii=False)}" for t in tools
    )
    return (
        "You can use these tools:\n"
        f"{described}\n"
        "To use one, answer with a line of its own: TOOL: <tool id> {<JSON arguments>}\n"
        "and nothing else; the result comes back in the next message. Answer normally when you need no tool."
    )


def build_messages(prepared: PreparedTurn, memories: list[Any], text_tools: list[Any] | None) -> list[dict[str, Any]]:
    turn, blueprint = prepared.turn, prepared.blueprint
    system = [part for part in (blueprint.system_prompt.strip(), character_prompt(blueprint)) if part]
    # One id per line with nothing after it: a model (or the stub) copying an id into tool
    # arguments must not pick up punctuation with it.
    where = [f"- microDAO: {prepared.microdao_id}"]
    if turn.channel_id:
        where.append(f"- channel: {turn.channel_id}")
    if turn.user_id:
        where.append(f"- user: {turn.user_id}")
    system.append("Context:\n" + "\n".join(where))
    if memories:
        system.append("What you remember (most relevant first):\n" + "\n".join(f"- [{m.kind}] {m.content}" for m in memories))
    if turn.context:
        recent = turn.context[-MAX_CONTEXT_MESSAGES:]
        system.append(
            "Recent messages in this channel (oldest first):\n"
            + "\n".join(f"{m.get('author') or m.get('role', 'user')}: {m.get('content', '')}" for m in recent)
        )
    if text_tools:
        system.append(_text_tools_prompt(text_tools))
    return [
        {"role": "system", "content": "\n\n".join(system)},
        *prepared.history,
        {"role": "user", "content": turn.message},
    ]
