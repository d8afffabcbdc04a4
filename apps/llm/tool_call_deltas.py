"""Streamed tool calls put back together: the one accumulator of the UI stream, the Responses
stream and the agent turn.

Providers stream a call in pieces (StreamEvent kind "tool_call"): `index` says which call, the
first piece brings its `id` and `name`, every piece may add to the JSON `arguments` text.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass
class StreamedToolCall:
    index: int
    id: str
    name: str
    arguments: str = ""

    def parsed_arguments(self) -> Any:
        """The arguments as JSON, or the raw text when it is not JSON (the caller decides)."""
        try:
            return json.loads(self.arguments or "{}")
        except ValueError:
            return self.arguments


class ToolCallDeltas:
    def __init__(self) -> None:
        self._calls: dict[int, StreamedToolCall] = {}

    def add(self, *, index: int, id: str = "", name: str = "", arguments: str = "") -> tuple[StreamedToolCall, bool]:
        """Adds one piece; returns its call and whether the piece began it. A call the
        upstream sent without an id gets one, so every call can be answered."""
        call = self._calls.get(index)
        began = call is None
        if call is None:
            call = self._calls[index] = StreamedToolCall(index, id or f"call_{uuid.uuid4().hex[:12]}", name)
        elif name and not call.name:  # some upstreams name the call after its first piece
            call.name = name
        call.arguments += arguments
        return call, began

    def calls(self) -> list[StreamedToolCall]:
        return [self._calls[index] for index in sorted(self._calls)]
