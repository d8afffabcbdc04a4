"""The Vercel AI SDK UI message stream (protocol v1): the one encoder behind
/internal/llm/stream and agent runs.

A message is `start`, steps (`start-step` … `finish-step`) holding text, reasoning and tool
parts, and `finish` (or `error`). This encoder keeps which text or reasoning part is open, so
every part is started before its deltas and ended before a tool call, the end of a step, an
error or the finish, with ids unique in the message (`text-1`, `reasoning-1`, …). Only chunk
types and fields the protocol defines are sent (some AI SDK versions validate chunks
strictly): our own data travels in `messageMetadata`. Chunks are dicts; `daarion.infra.sse.event`
frames them.
"""

from __future__ import annotations

from typing import Any

Chunk = dict[str, Any]

PROTOCOL_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


class UIMessageStream:
    def __init__(self) -> None:
        self._text: str | None = None
        self._reasoning: str | None = None
        self._counts = {"text": 0, "reasoning": 0}

    def _open(self, kind: str) -> str:
        self._counts[kind] += 1
        return f"{kind}-{self._counts[kind]}"

    def close_parts(self) -> list[Chunk]:
        out: list[Chunk] = []
        if self._reasoning is not None:
            out.append({"type": "reasoning-end", "id": self._reasoning})
            self._reasoning = None
        if self._text is not None:
            out.append({"type": "text-end", "id": self._text})
            self._text = None
        return out

    def start(self, message_id: str, metadata: dict[str, Any] | None = None) -> list[Chunk]:
        chunk: Chunk = {"type": "start", "messageId": message_id}
        if metadata:
            chunk["messageMetadata"] = metadata
        return [chunk]

    def start_step(self) -> list[Chunk]:
        return [{"type": "start-step"}]

    def text(self, delta: str) -> list[Chunk]:
        out: list[Chunk] = []
        if self._reasoning is not None:  # the answer proper began: the reasoning is over
            out.append({"type": "reasoning-end", "id": self._reasoning})
            self._reasoning = None
        if self._text is None:
            self._text = self._open("text")
            out.append({"type": "text-start", "id": self._text})
        out.append({"type": "text-delta", "id": self._text, "delta": delta})
        return out

    def reasoning(self, delta: str) -> list[Chunk]:
        out: list[Chunk] = []
        if self._reasoning is None:  # a new part each time the reasoning resumes
            self._reasoning = self._open("reasoning")
            out.append({"type": "reasoning-start", "id": self._reasoning})
        out.append({"type": "reasoning-delta", "id": self._reasoning, "delta": delta})
        return out

    def tool_input_start(self, call_id: str, tool_name: str) -> list[Chunk]:
        return [*self.close_parts(), {"type": "tool-input-start", "toolCallId": call_id, "toolName": tool_name}]

    def tool_input_delta(self, call_id: str, delta: str) -> list[Chunk]:
        return [{"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": delta}]

    def tool_input_available(self, call_id: str, tool_name: str, tool_input: Any) -> list[Chunk]:
        return [
            *self.close_parts(),
            {"type": "tool-input-available", "toolCallId": call_id, "toolName": tool_name, "input": tool_input},
        ]

    def tool_output(self, call_id: str, output: Any) -> list[Chunk]:
        return [{"type": "tool-output-available", "toolCallId": call_id, "output": output}]

    def tool_output_error(self, call_id: str, error_text: str) -> list[Chunk]:
        return [{"type": "tool-output-error", "toolCallId": call_id, "errorText": error_text}]

    def metadata(self, metadata: dict[str, Any]) -> list[Chunk]:
        return [{"type": "message-metadata", "messageMetadata": metadata}]

    def finish_step(self) -> list[Chunk]:
        return [*self.close_parts(), {"type": "finish-step"}]

    def finish(self, metadata: dict[str, Any] | None = None) -> list[Chunk]:
        chunk: Chunk = {"type": "finish"}
        if metadata is not None:
            chunk["messageMetadata"] = metadata
        return [*self.close_parts(), chunk]

    def error(self, error_text: str) -> list[Chunk]:
        return [*self.close_parts(), {"type": "error", "errorText": error_text}]
