"""Reading an AI SDK UI message stream in tests, and the fields each chunk type may carry."""

from __future__ import annotations

import json
from typing import Any

# The protocol's chunk types and the fields we may send in each (the AI SDK's schemas allow
# a few more optional ones; we send nothing outside these).
ALLOWED_FIELDS: dict[str, set[str]] = {
    "start": {"type", "messageId", "messageMetadata"},
    "message-metadata": {"type", "messageMetadata"},
    "start-step": {"type"},
    "finish-step": {"type"},
    "text-start": {"type", "id"},
    "text-delta": {"type", "id", "delta"},
    "text-end": {"type", "id"},
    "tool-input-start": {"type", "toolCallId", "toolName"},
    "tool-input-available": {"type", "toolCallId", "toolName", "input"},
    "tool-output-available": {"type", "toolCallId", "output"},
    "tool-output-error": {"type", "toolCallId", "errorText"},
    "finish": {"type", "messageMetadata"},
    "error": {"type", "errorText"},
}


def parse_events(body: str) -> tuple[list[tuple[str | None, dict[str, Any]]], int, bool]:
    """([(event id, chunk)], heartbeat comments seen, whether it ended with [DONE])."""
    events, heartbeats, done = [], 0, False
    for event in body.split("\n\n"):
        if not event.strip():
            continue
        assert not done, f"data after [DONE]: {event!r}"
        if event.startswith(":"):
            heartbeats += 1
            continue
        event_id = None
        if event.startswith("id: "):
            id_line, _, event = event.partition("\n")
            event_id = id_line[len("id: ") :]
        assert event.startswith("data: "), event
        data = event[len("data: ") :]
        if data == "[DONE]":
            assert event_id is None, "[DONE] carries no id: a resume after it would replay nothing"
            done = True
            continue
        events.append((event_id, json.loads(data)))
    return events, heartbeats, done


def parse_sse(body: str) -> tuple[list[dict[str, Any]], int, bool]:
    """(chunks, heartbeat comments seen, whether it ended with [DONE])."""
    events, heartbeats, done = parse_events(body)
    return [chunk for _, chunk in events], heartbeats, done


def assert_protocol(chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        allowed = ALLOWED_FIELDS.get(chunk.get("type"))
        assert allowed is not None, f"unknown chunk type: {chunk}"
        assert set(chunk) <= allowed, f"fields outside the protocol: {chunk}"
