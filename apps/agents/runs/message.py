"""The assistant message of a run, folded from its UI message chunks the way the AI SDK's
`readUIMessageStream` builds a `UIMessage`, and the chunks that replay a stored message.

The executor folds every chunk it writes, so the row keeps the final (or, for a cancelled or
interrupted run, the partial) message; a reader of a run whose stream has expired gets the
message replayed as chunks.
"""

from __future__ import annotations

from typing import Any


class MessageBuilder:
    """Folds UI message chunks into `{id, role, parts, metadata}`."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"id": "", "role": "assistant", "parts": [], "metadata": {}}
        self.error: str | None = None
        self._texts: dict[str, dict[str, Any]] = {}
        self._tools: dict[str, dict[str, Any]] = {}

    @property
    def text(self) -> str:
        """The message's text parts joined, as the JSON answer's `reply` is."""
        texts = [p["text"].strip() for p in self.message["parts"] if p["type"] == "text" and p["text"].strip()]
        return "\n\n".join(texts)

    @property
    def open_text_ids(self) -> list[str]:
        return [i for i, part in self._texts.items() if part.get("state") == "streaming"]

    def add(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        parts = self.message["parts"]
        part: dict[str, Any] | None
        if kind == "start":
            self.message["id"] = chunk.get("messageId") or self.message["id"]
            self.message["metadata"].update(chunk.get("messageMetadata") or {})
        elif kind in ("message-metadata", "finish"):
            self.message["metadata"].update(chunk.get("messageMetadata") or {})
        elif kind == "start-step":
            parts.append({"type": "step-start"})
        elif kind == "text-start":
            part = {"type": "text", "text": "", "state": "streaming"}
            self._texts[chunk["id"]] = part
            parts.append(part)
        elif kind == "text-delta":
            part = self._texts.get(chunk["id"])
            if part is not None:
                part["text"] += chunk.get("delta", "")
        elif kind == "text-end":
            part = self._texts.get(chunk["id"])
            if part is not None:
                part["state"] = "done"
        elif kind == "tool-input-start":
            part = {
                "type": f"tool-{chunk['toolName']}",
                "toolCallId": chunk["toolCallId"],
                "state": "input-streaming",
                "input": None,
            }
            self._tools[chunk["toolCallId"]] = part
            parts.append(part)
        elif kind == "tool-input-available":
            part = self._tools.get(chunk["toolCallId"])
            if part is None:
                self.add({"type": "tool-input-start", "toolCallId": chunk["toolCallId"], "toolName": chunk["toolName"]})
                part = self._tools[chunk["toolCallId"]]
            part.update(state="input-available", input=chunk.get("input"))
        elif kind == "tool-output-available":
            part = self._tools.get(chunk["toolCallId"])
            if part is not None:
                part.update(state="output-available", output=chunk.get("output"))
        elif kind == "tool-output-error":
            part = self._tools.get(chunk["toolCallId"])
            if part is not None:
                part.update(state="output-error", errorText=chunk.get("errorText"))
        elif kind == "error":
            self.error = chunk.get("errorText")


def replay_chunks(message: dict[str, Any] | None, *, error_text: str | None = None) -> list[dict[str, Any]]:
    """The chunks that rebuild `message` (a run's stored UIMessage) in an AI SDK client."""
    message = message or {"id": "", "parts": [], "metadata": {}}
    chunks: list[dict[str, Any]] = [
        {"type": "start", "messageId": message.get("id") or "", "messageMetadata": message.get("metadata") or {}}
    ]
    in_step = False
    for index, part in enumerate(message.get("parts") or []):
        kind = part.get("type", "")
        if kind == "step-start":
            if in_step:
                chunks.append({"type": "finish-step"})
            chunks.append({"type": "start-step"})
            in_step = True
        elif kind == "text":
            text_id = f"text-r{index}"
            chunks += [
                {"type": "text-start", "id": text_id},
                {"type": "text-delta", "id": text_id, "delta": part.get("text", "")},
                {"type": "text-end", "id": text_id},
            ]
        elif kind.startswith("tool-"):
            call_id, name = part.get("toolCallId", ""), kind[len("tool-") :]
            chunks.append({"type": "tool-input-start", "toolCallId": call_id, "toolName": name})
            if part.get("state") in ("input-available", "output-available", "output-error"):
                chunks.append(
                    {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": part.get("input")}
                )
            if part.get("state") == "output-available":
                chunks.append({"type": "tool-output-available", "toolCallId": call_id, "output": part.get("output")})
            elif part.get("state") == "output-error":
                chunks.append({"type": "tool-output-error", "toolCallId": call_id, "errorText": part.get("errorText", "")})
    if in_step:
        chunks.append({"type": "finish-step"})
    if error_text:
        chunks.append({"type": "error", "errorText": error_text})
    else:
        chunks.append({"type": "finish", "messageMetadata": message.get("metadata") or {}})
    return chunks
