"""The turn as a Vercel AI SDK UI message stream (protocol v1) over Server-Sent Events.

Each chunk is `data: {json}\\n\\n`; the stream ends with `data: [DONE]`. Only chunk types and
fields the protocol defines are sent (some AI SDK versions validate chunks strictly): usage
and our ids travel in `messageMetadata` of `start` and `finish`. While nothing happens (a
slow tool, a slow model) an SSE comment `: heartbeat` keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from apps.agents.pipeline import (
    MemoriesRecalled,
    PreparedTurn,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolInputAvailable,
    ToolInputStarted,
    ToolOutput,
    TurnFailed,
    TurnFinished,
    TurnStarted,
    turn_events,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = ": heartbeat\n\n"
DONE = "data: [DONE]\n\n"


def sse(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk, ensure_ascii=False, separators=(',', ':'), default=str)}\n\n"


async def with_heartbeats(source: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """Yields `source`'s items, and None whenever `interval` seconds pass without one.

    The pending `__anext__` is never cancelled by a heartbeat, only awaited again, so a
    slow tool call runs undisturbed.
    """
    iterator = aiter(source)
    pending: asyncio.Future = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        if not pending.done():
            pending.cancel()
        # Closing the source runs its `finally` blocks (closes the upstream model stream).
        closer = getattr(source, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except RuntimeError:  # already running in the cancelled task: it ends there
                pass


class UIChunks:
    """Turns pipeline events into UI message stream chunks, keeping per-step text state."""

    def __init__(self) -> None:
        self.open_text: str | None = None
        self.start_meta: dict[str, Any] = {}

    def _close_text(self) -> list[dict[str, Any]]:
        if self.open_text is None:
            return []
        chunk = {"type": "text-end", "id": self.open_text}
        self.open_text = None
        return [chunk]

    def chunks(self, event: Any) -> list[dict[str, Any]]:
        if isinstance(event, TurnStarted):
            self.start_meta = {
                "agent_id": event.agent_id, "agent_version": event.agent_version,
                "session_id": event.session_id, "turn_id": event.turn_id,
            }
            return [{"type": "start", "messageId": event.turn_id, "messageMetadata": self.start_meta}]
        if isinstance(event, MemoriesRecalled):
            return [{"type": "message-metadata", "messageMetadata": {"memory_ids": event.memory_ids}}]
        if isinstance(event, StepStarted):
            return [{"type": "start-step"}]
        if isinstance(event, TextDelta):
            out: list[dict[str, Any]] = []
            if self.open_text is None:
                self.open_text = f"text-{event.step}"
                out.append({"type": "text-start", "id": self.open_text})
            out.append({"type": "text-delta", "id": self.open_text, "delta": event.text})
            return out
        if isinstance(event, ToolInputStarted):
            return [*self._close_text(), {"type": "tool-input-start", "toolCallId": event.call_id, "toolName": event.tool_id}]
        if isinstance(event, ToolInputAvailable):
            return [{"type": "tool-input-available", "toolCallId": event.call_id, "toolName": event.tool_id,
                     "input": event.arguments}]
        if isinstance(event, ToolOutput):
            if event.ok:
                return [{"type": "tool-output-available", "toolCallId": event.call_id, "output": event.result}]
            error = f"{event.error_type}: {event.error}" if event.error_type else str(event.error)
            return [{"type": "tool-output-error", "toolCallId": event.call_id, "errorText": error}]
        if isinstance(event, StepFinished):
            return [*self._close_text(), {"type": "finish-step"}]
        if isinstance(event, TurnFinished):
            return [{
                "type": "finish",
                "messageMetadata": {
                    "usage": event.usage, "finish_reason": event.finish_reason,
                    "stored_memory_id": event.stored_memory_id,
                },
            }]
        if isinstance(event, TurnFailed):
            return [*self._close_text(), {"type": "error", "errorText": f"{event.error.type}: {event.error.message}"}]
        return []


async def ui_message_stream(prepared: PreparedTurn, *, heartbeat_seconds: float) -> AsyncIterator[str]:
    """The SSE body of a streamed turn."""
    encoder = UIChunks()
    try:
        async for event in with_heartbeats(turn_events(prepared), heartbeat_seconds):
            if event is None:
                yield HEARTBEAT
                continue
            for chunk in encoder.chunks(event):
                yield sse(chunk)
    except Exception:  # noqa: BLE001 - the status line is sent; only an in-band error is left
        logger.exception("agent turn crashed", extra={"agent_id": prepared.blueprint.id})
        yield sse({"type": "error", "errorText": "internal_error: the agent turn failed; see the server log"})
    yield DONE
