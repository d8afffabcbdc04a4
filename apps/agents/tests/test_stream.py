"""The stream helpers on their own: text parsing of
the TOOL convention, and the chunk encoder's protocol fields."""

from __future__ import annotations

from apps.agents.pipeline import (
    StepFinished,
    StepStarted,
    TextDelta,
    ToolInputAvailable,
    ToolInputStarted,
    ToolOutput,
    TurnFinished,
    TurnStarted,
    parse_text_tool_calls,
)
from apps.agents.stream import UIChunks
from apps.agents.tests.sse import assert_protocol


def test_text_convention_lines_are_split_from_the_text():
    text, calls = parse_text_tool_calls(
        'Let me look.\nTOOL: projects.list {"microdao_id": "microdao:7"}\n  TOOL: followups.create\nTOOL RESULT x: 1'
    )
    assert text == "Let me look.\nTOOL RESULT x: 1"
    assert calls == [("projects.list", '{"microdao_id": "microdao:7"}'), ("followups.create", "{}")]


def test_encoder_sends_only_protocol_fields_and_closes_text_before_tools():
    encoder = UIChunks()
    events = [
        TurnStarted("turn-1", "agent:sofia", 3, "sess-1"),
        StepStarted(0),
        TextDelta(0, "Let me check. "),
        ToolInputStarted(0, "c1", "projects.list"),
        ToolInputAvailable(0, "c1", "projects.list", "projects__list", {"microdao_id": "microdao:7"}),
        ToolOutput(0, "c1", "projects.list", False, error="boom", error_type="upstream_error"),
        StepFinished(0, {"total_tokens": 3}, "tool_calls", "stub", "dagi-stub"),
        TurnFinished("Let me check.", {"total_tokens": 3}, "mem-1", "stop"),
    ]
    chunks = [chunk for event in events for chunk in encoder.chunks(event)]
    assert_protocol(chunks)
    assert [c["type"] for c in chunks] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-available",
        "tool-output-error",
        "finish-step",
        "finish",
    ]
    assert chunks[7]["errorText"] == "upstream_error: boom"
    assert chunks[-1]["messageMetadata"]["usage"] == {"total_tokens": 3}
