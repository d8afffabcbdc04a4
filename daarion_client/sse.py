"""Parsing Server-Sent Events of the AI SDK UI message stream into chunk dicts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from daarion_client.errors import DaarionAPIError

DONE = object()


def parse_event(lines: list[str]) -> Any:
    """One SSE event (its lines) -> a chunk dict, DONE, or None (comment/heartbeat)."""
    data = [line[5:].lstrip(" ") if line.startswith("data:") else None for line in lines]
    payload = "\n".join(d for d in data if d is not None)
    if not payload:
        return None
    if payload == "[DONE]":
        return DONE
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise DaarionAPIError(0, "stream_error", f"a stream chunk is not JSON: {payload[:200]!r}") from exc


def _check(chunk: dict[str, Any], raise_on_error: bool) -> dict[str, Any]:
    if raise_on_error and chunk.get("type") == "error":
        text = str(chunk.get("errorText", ""))
        kind, sep, message = text.partition(": ")
        raise DaarionAPIError(200, kind if sep else "stream_error", message if sep else text,
                              envelope={"error": {"type": kind if sep else "stream_error", "message": text}})
    return chunk


def iter_chunks(lines: Iterator[str], *, raise_on_error: bool = True) -> Iterator[dict[str, Any]]:
    event: list[str] = []
    for line in lines:
        if line:
            event.append(line)
            continue
        item = parse_event(event)
        event = []
        if item is DONE:
            return
        if item is not None:
            yield _check(item, raise_on_error)
    item = parse_event(event)
    if item is not None and item is not DONE:
        yield _check(item, raise_on_error)


async def aiter_chunks(lines: AsyncIterator[str], *, raise_on_error: bool = True) -> AsyncIterator[dict[str, Any]]:
    event: list[str] = []
    async for line in lines:
        if line:
            event.append(line)
            continue
        item = parse_event(event)
        event = []
        if item is DONE:
            return
        if item is not None:
            yield _check(item, raise_on_error)
    item = parse_event(event)
    if item is not None and item is not DONE:
        yield _check(item, raise_on_error)
