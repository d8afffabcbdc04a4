"""A turn's events as Vercel AI SDK UI message stream chunks (protocol v1).

The encoding itself is `daarion.infra.ui_message_stream` (shared with /internal/llm/stream); this
module maps the pipeline's events onto it: our ids travel in `messageMetadata` of `start`,
the recalled memories in a `message-metadata` chunk, usage in `finish`. The executor of a run
encodes; web processes frame what they read from the run's stream with `daarion.infra.sse`.
"""

from __future__ import annotations

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
from daarion.infra import sse
from daarion.infra.ui_message_stream import PROTOCOL_HEADERS, UIMessageStream

HEADERS = {**PROTOCOL_HEADERS, **sse.HEADERS}


class UIChunks:
    """Turns pipeline events into UI message stream chunks (one message per turn)."""

    def __init__(self) -> None:
        self.ui = UIMessageStream()
        self.start_meta: dict[str, Any] = {}

    def chunks(self, event: Any) -> list[dict[str, Any]]:
        ui = self.ui
        if isinstance(event, TurnStarted):
            self.start_meta = {
                "agent_id": event.agent_id,
                "agent_version": event.agent_version,
                "session_id": event.session_id,
                "turn_id": event.turn_id,
            }
            return ui.start(event.turn_id, self.start_meta)
        if isinstance(event, MemoriesRecalled):
            return ui.metadata({"memory_ids": event.memory_ids})
        if isinstance(event, StepStarted):
            return ui.start_step()
        if isinstance(event, TextDelta):
            return ui.text(event.text)
        if isinstance(event, ToolInputStarted):
            return ui.tool_input_start(event.call_id, event.tool_id)
        if isinstance(event, ToolInputAvailable):
            return ui.tool_input_available(event.call_id, event.tool_id, event.arguments)
        if isinstance(event, ToolOutput):
            if event.ok:
                return ui.tool_output(event.call_id, event.result)
            return ui.tool_output_error(
                event.call_id, f"{event.error_type}: {event.error}" if event.error_type else str(event.error)
            )
        if isinstance(event, StepFinished):
            return ui.finish_step()
        if isinstance(event, TurnFinished):
            return ui.finish(
                {
                    "usage": event.usage,
                    "finish_reason": event.finish_reason,
                    "stored_memory_id": event.stored_memory_id,
                }
            )
        if isinstance(event, TurnFailed):
            return ui.error(f"{event.error.type}: {event.error.message}")
        return []
