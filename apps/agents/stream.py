"""A turn's events as Vercel AI SDK UI message stream chunks (protocol v1), and their SSE framing.

Each chunk is `data: {json}\\n\\n`; the stream ends with `data: [DONE]`. Only chunk types and
fields the protocol defines are sent (some AI SDK versions validate chunks strictly): usage
and our ids travel in `messageMetadata` of `start` and `finish`. While nothing happens (a
slow tool, a slow model) an SSE comment `: heartbeat` keeps proxies from closing the stream.
The executor of a run encodes; web processes frame what they read from the run's stream.
"""

from __future__ import annotations

import json
from typing import Any

from apps.agents.pipeline import (
    MemoriesRecalled,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolInputAvailable,
    ToolInputStarted,
    ToolOutput,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)

HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = ": heartbeat\n\n"
DONE = "data: [DONE]\n\n"


def sse(chunk: dict[str, Any], *, event_id: str | None = None) -> str:
    """One SSE event; `event_id` (a run's stream entry id) lets a client resume after it."""
    data = json.dumps(chunk, ensure_ascii=False, separators=(',', ':'), default=str)
    return f"id: {event_id}\ndata: {data}\n\n" if event_id else f"data: {data}\n\n"


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
