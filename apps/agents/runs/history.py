"""Session continuity: a session's earlier turns (from its transcript) as prompt messages.

Newest turns are kept first, within the agent's `history_turns` and `history_tokens`
(tokens estimated at four characters each, the usual rule of thumb for English and code;
it overestimates nothing badly enough to matter for a budget). What does not fit is left to
memory recall. Tool calls and their results are included, in the form the agent's tool
mode uses, so the model sees what it did before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 4


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(item.get("text", "") for item in content if isinstance(item, dict) and item.get("type") == "text")
    return ""


def _turn_messages(entries: list[dict[str, Any]], *, text_mode: bool, function_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """One turn's transcript entries (user, then assistant / tool-result pairs) as messages."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        message = entry.get("message") or {}
        content = message.get("content")
        if entry.get("type") == "user" and isinstance(content, str):
            out.append({"role": "user", "content": content})
        elif entry.get("type") == "assistant":
            text = _text_of(content)
            uses = [c for c in content or [] if isinstance(c, dict) and c.get("type") == "tool_use"]
            if text_mode:
                lines = [text] if text else []
                lines += [f"TOOL: {u.get('name')} {json.dumps(u.get('input') or {}, ensure_ascii=False)}" for u in uses]
                if lines:
                    out.append({"role": "assistant", "content": "\n".join(lines)})
                continue
            assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
            if uses:
                assistant["tool_calls"] = [
                    {
                        "id": u.get("id"),
                        "type": "function",
                        "function": {
                            "name": function_names.get(u.get("name", ""), u.get("name", "")),
                            "arguments": json.dumps(
                                u.get("input") if isinstance(u.get("input"), dict) else {}, ensure_ascii=False
                            ),
                        },
                    }
                    for u in uses
                ]
            if assistant["content"] or uses:
                out.append(assistant)
        elif entry.get("type") == "user" and isinstance(content, list):
            results = [c for c in content if isinstance(c, dict) and c.get("type") == "tool_result"]
            if text_mode:
                out.append(
                    {
                        "role": "user",
                        "content": "\n".join(
                            f"TOOL {'ERROR' if r.get('is_error') else 'RESULT'}: {r.get('content', '')}" for r in results
                        ),
                    }
                )
            else:
                out += [
                    {"role": "tool", "tool_call_id": r.get("tool_use_id"), "content": str(r.get("content", ""))} for r in results
                ]
    # A turn cut short (cancelled mid-step) may end on tool calls without results: the model
    # APIs refuse such a history, so those calls are dropped.
    if out and out[-1].get("tool_calls"):
        last = out.pop()
        if last.get("content"):
            out.append({"role": "assistant", "content": last["content"]})
    return out


def history_messages(
    entries: list[dict[str, Any]],
    *,
    max_turns: int,
    max_tokens: int,
    text_mode: bool = False,
    function_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The messages of the newest earlier turns that fit, oldest first."""
    if max_turns <= 0 or max_tokens <= 0 or not entries:
        return []
    turns: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        turns.setdefault(str(entry.get("turnId") or entry.get("uuid")), []).append(entry)
    kept: list[list[dict[str, Any]]] = []
    budget = max_tokens * CHARS_PER_TOKEN
    for turn_entries in reversed(list(turns.values())):
        if len(kept) >= max_turns:
            break
        messages = _turn_messages(turn_entries, text_mode=text_mode, function_names=function_names or {})
        if not messages or messages[0]["role"] != "user":
            continue
        size = len(json.dumps(messages, ensure_ascii=False))
        if size > budget:
            break
        budget -= size
        kept.append(messages)
    return [message for turn in reversed(kept) for message in turn]
