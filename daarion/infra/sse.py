"""Server-sent events: the one framing of every streaming door (the AI SDK UI message streams
of /internal/llm/stream and the agent runs, OpenAI's and Anthropic's streams on /v1) and the
one heartbeat.

An event is `[id: ...\\n][event: ...\\n]data: <compact JSON>\\n\\n`; `[DONE]` ends OpenAI-style
streams; a comment (`: heartbeat`) keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

HEARTBEAT = b": heartbeat\n\n"
DONE = b"data: [DONE]\n\n"
# Proxies must neither buffer nor transform an event stream.
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def event(data: Any, *, name: str | None = None, event_id: str | None = None) -> bytes:
    """One event; `event_id` lets a client resume after it (Last-Event-ID)."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    head = (f"id: {event_id}\n" if event_id else "") + (f"event: {name}\n" if name else "")
    return f"{head}data: {body}\n\n".encode()


async def with_heartbeat(source: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Passes `source` through, adding a heartbeat whenever it is silent for `interval`.

    For sources that cannot say they are idle (an upstream model before its first token). The
    source runs in its own task feeding a queue, so a slow upstream never blocks the heartbeat;
    closing this iterator (client gone) cancels that task, and with it the upstream request.
    A source that can say so (a run's chunk stream, read with a blocking timeout) sends
    HEARTBEAT itself and needs no task.
    """
    queue: asyncio.Queue[bytes | None | BaseException] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put(exc)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=interval)
            except TimeoutError:
                yield HEARTBEAT
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
