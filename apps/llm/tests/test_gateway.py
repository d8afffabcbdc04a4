"""The in-process gateway: the calls other apps make, with routing, tools and usage."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway
from apps.llm.tests.conftest import usage_rows
from daarion.infra.errors import NotFound

pytestmark = pytest.mark.django_db(transaction=True)


def stream(**kwargs) -> list[gateway.StreamEvent]:
    async def collect() -> list[gateway.StreamEvent]:
        return [event async for event in gateway.stream_chat_completion(**kwargs)]

    return async_to_sync(collect)()


PROJECT_TOOL = {
    "type": "function",
    "function": {
        "name": "projects.list",
        "description": "Lists projects of a microDAO",
        "parameters": {"type": "object", "properties": {"microdao_id": {"type": "string"}}, "required": ["microdao_id"]},
    },
}


def test_chat_completion_answers_from_the_stub(stub_model):
    result = gateway.chat_completion_sync(
        model="dagi-stub",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        agent_id="agent:sofia",
        microdao_id="microdao:7",
        request_id="req-gw-1",
    )
    assert result.content == "[stub] You said: hello there"
    assert result.provider == "stub"
    assert result.model_resolved == "dagi-stub"
    assert result.finish_reason == "stop"
    assert result.usage == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    rows = usage_rows(request_id="req-gw-1")
    assert len(rows) == 1
    row = rows[0]
    assert (row.agent_id, row.microdao_id, row.status, row.total_tokens) == ("agent:sofia", "microdao:7", "ok", 11)
    assert float(row.cost) == pytest.approx((6 * 1 + 5 * 2) / 1_000_000)


def test_stub_calls_the_project_tool_then_uses_its_result(stub_model):
    messages = [{"role": "user", "content": "Which projects does microdao:7 have?"}]
    first = gateway.chat_completion_sync(model="dagi-stub", messages=messages, tools=[PROJECT_TOOL])
    assert first.finish_reason == "tool_calls"
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    # The id is mapped to a valid function name upstream and back for the caller.
    assert call.name == "projects.list"
    assert json.loads(call.arguments) == {"microdao_id": "microdao:7"}
    followup = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '[{"name": "Roadmap"}]'},
    ]
    second = gateway.chat_completion_sync(model="dagi-stub", messages=followup, tools=[PROJECT_TOOL])
    assert second.tool_calls == []
    assert "Roadmap" in second.content


def test_stream_chat_completion_yields_deltas_then_usage(stub_model):
    events = stream(model="dagi-stub", messages=[{"role": "user", "content": "one two three"}], agent_id="agent:sofia")
    text = "".join(e.text for e in events if e.kind == "text")
    assert text == "[stub] You said: one two three"
    assert events[-1].kind == "finish"
    used = events[-1].usage
    assert used.total_tokens == used.prompt_tokens + used.completion_tokens > 0
    assert events[-1].model_resolved == "dagi-stub"


def test_stream_with_tools_yields_a_tool_call(stub_model):
    events = stream(model="dagi-stub", messages=[{"role": "user", "content": "list my projects"}], tools=[PROJECT_TOOL])
    calls = [e for e in events if e.kind == "tool_call"]
    assert calls and calls[0].name == "projects.list"
    assert events[-1].finish_reason == "tool_calls"


def test_embeddings_are_deterministic_and_similar_texts_are_closer(stub_provider, make_model):
    make_model("dagi-embed-stub", stub_provider, "stub-embed-64", can_embed=True)
    result = gateway.create_embeddings_sync(
        model="dagi-embed-stub", inputs=["red apple pie", "red apple tart", "quantum physics"]
    )
    assert len(result.vectors) == 3 and all(len(v) == 64 for v in result.vectors)
    again = gateway.create_embeddings_sync(model="dagi-embed-stub", inputs=["red apple pie"])
    assert again.vectors[0] == result.vectors[0]

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(result.vectors[0], result.vectors[1]) > cos(result.vectors[0], result.vectors[2])
    assert result.model_resolved == "dagi-embed-stub"
    assert result.usage["prompt_tokens"] == 8


def test_unknown_model_is_not_found(stub_model):
    with pytest.raises(NotFound) as info:
        gateway.chat_completion_sync(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.type == "model_not_found"
    assert "dagi-stub" in info.value.details["available"]


def test_gateway_takes_parameters_and_reasoning(fake_provider, make_model, fake_stats):
    make_model("gw-thinker", fake_provider, "reasoning")
    hm = [{"role": "user", "content": "hm"}]
    result = async_to_sync(gateway.chat_completion)(model="gw-thinker", messages=hm, params={"seed": 9, "stop": ["X"]})
    assert result.reasoning == "thinking about: hm" and result.content == "echo: hm"
    assert (fake_stats()["last"]["body"]["seed"], fake_stats()["last"]["body"]["stop"]) == (9, ["X"])

    async def collect(**kwargs) -> list[gateway.StreamEvent]:
        return [e async for e in gateway.stream_chat_completion(model="gw-thinker", messages=hm, **kwargs)]

    assert "reasoning" not in [e.kind for e in async_to_sync(collect)()], "callers that did not ask never see it"
    events = async_to_sync(collect)(include_reasoning=True)
    assert "".join(e.text for e in events if e.kind == "reasoning") == "thinking about: hm"
