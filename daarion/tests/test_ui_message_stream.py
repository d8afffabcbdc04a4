"""The one UI message stream encoder: parts opened before their deltas, closed before tools,
steps, errors and the finish, with ids unique in the message; and the SSE framing."""

from __future__ import annotations

import json

from apps.llm.tool_call_deltas import ToolCallDeltas
from daarion.infra import sse
from daarion.infra.ui_message_stream import UIMessageStream


def _types(chunks: list[dict]) -> list[str]:
    return [c["type"] for c in chunks]


def test_reasoning_text_and_tools_open_and_close_in_order():
    ui = UIMessageStream()
    chunks = [
        *ui.start("m1"),
        *ui.start_step(),
        *ui.reasoning("hmm"),
        *ui.reasoning(" ok"),
        *ui.text("Hi"),
        *ui.reasoning("again"),
        *ui.tool_input_start("c1", "t"),
        *ui.tool_input_delta("c1", "{}"),
        *ui.tool_input_available("c1", "t", {}),
        *ui.text("done"),
        *ui.finish_step(),
        *ui.finish({"a": 1}),
    ]
    assert _types(chunks) == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    starts = [c["id"] for c in chunks if c["type"].endswith("-start") and "id" in c]
    assert starts == ["reasoning-1", "text-1", "reasoning-2", "text-2"], "each part has an id of its own"
    assert chunks[-1] == {"type": "finish", "messageMetadata": {"a": 1}}


def test_an_error_closes_what_is_open():
    ui = UIMessageStream()
    chunks = [*ui.text("par"), *ui.error("upstream_error: gone")]
    assert _types(chunks) == ["text-start", "text-delta", "text-end", "error"]
    assert ui.close_parts() == []


def test_tool_call_pieces_become_whole_calls():
    deltas = ToolCallDeltas()
    first, began = deltas.add(index=1, id="", name="", arguments='{"a"')
    assert began and first.id.startswith("call_")
    _, began = deltas.add(index=1, name="late.name", arguments=": 1}")
    assert not began
    deltas.add(index=0, id="c0", name="t0", arguments="not json")
    calls = deltas.calls()
    assert [c.index for c in calls] == [0, 1]
    assert calls[1].name == "late.name" and calls[1].parsed_arguments() == {"a": 1}
    assert calls[0].parsed_arguments() == "not json"


def test_sse_framing():
    assert sse.event({"x": "ї"}, name="delta", event_id="1-0") == 'id: 1-0\nevent: delta\ndata: {"x":"ї"}\n\n'.encode()
    assert json.loads(sse.event({"a": [1]})[6:]) == {"a": [1]}
