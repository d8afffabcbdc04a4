"""Parsing Server-Sent Events of the AI SDK UI message stream into chunk dicts."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from daarion_client.errors import DaarionAPIError

DONE = object()


def parse_event(lines: list[str]) -> Any:
    """One SSE event (its lines) -> a chunk dict, DONE, or None (comment/heartbeat)."""
    return parse_event_with_id(lines)[1]


def parse_event_with_id(lines: list[str]) -> tuple[str | None, Any]:
    """One SSE event -> (its `id:`, a chunk dict / DONE / None)."""
    event_id = next((line[3:].strip() for line in lines if line.startswith("id:")), None)
    data = [line[5:].lstrip(" ") if line.startswith("data:") else None for line in lines]
    payload = "\n".join(d for d in data if d is not None)
    if not payload:
        return event_id, None
    if payload == "[DONE]":
        return event_id, DONE
    try:
        return event_id, json.loads(payload)
    except ValueError as exc:
        raise DaarionAPIError(0, "stream_error", f"a stream chunk is not JSON: {payload[:200]!r}") from exc


def _check(chunk: dict[str, Any], raise_on_error: bool) -> dict[str, Any]:
    if raise_on_error and chunk.get("type") == "error":
        text = str(chunk.get("errorText", ""))
        kind, sep, message = text.partition(": ")
        raise DaarionAPIError(
            200,
            kind if sep else "stream_error",
            message if sep else text,
            envelope={"error": {"type": kind if sep else "stream_error", "message": text}},
        )
    return chunk


def iter_events(lines: Iterator[str], *, raise_on_error: bool = True) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(event id, chunk) pairs until `[DONE]`; the id lets a reader resume after it."""
    event: list[str] = []
    for line in itertools.chain(lines, [""]):  # a last event without a blank line after it
        if line:
            event.append(line)
            continue
        event_id, item = parse_event_with_id(event)
        event = []
        if item is DONE:
            return
        if item is not None:
            yield event_id, _check(item, raise_on_error)


async def aiter_events(
    lines: AsyncIterator[str], *, raise_on_error: bool = True
) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    event: list[str] = []

    async def with_end() -> AsyncIterator[str]:
        async for line in lines:
            yield line
        yield ""

    async for line in with_end():
        if line:
            event.append(line)
            continue
        event_id, item = parse_event_with_id(event)
        event = []
        if item is DONE:
            return
        if item is not None:
            yield event_id, _check(item, raise_on_error)


def iter_chunks(lines: Iterator[str], *, raise_on_error: bool = True) -> Iterator[dict[str, Any]]:
    return (chunk for _, chunk in iter_events(lines, raise_on_error=raise_on_error))


async def aiter_chunks(lines: AsyncIterator[str], *, raise_on_error: bool = True) -> AsyncIterator[dict[str, Any]]:
    async for _, chunk in aiter_events(lines, raise_on_error=raise_on_error):
        yield chunk
