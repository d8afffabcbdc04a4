"""POST /v1/responses with the official openai SDK: plain, streamed, a function-tool round
trip, json_schema output, the server-side state of `store`; and GET /v1/models/{id}."""

from __future__ import annotations

import json

import openai
import pytest

from apps.llm.tests.conftest import usage_rows

TOOL = {
    "type": "function",
    "name": "projects.list",
    "description": "List projects",
    "parameters": {"type": "object", "properties": {}},
}


@pytest.fixture
def sdk(asgi_server, make_token, stub_model, live) -> openai.OpenAI:
    live()
    return openai.OpenAI(
        base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["llm"], agents=["agent:resp"]), max_retries=0, timeout=30
    )


@pytest.fixture
def upstream(fake_provider, make_model, fake_stats, live):
    make_model("up-echo", fake_provider, "echo")
    make_model("up-reasoning", fake_provider, "reasoning")
    live()
    return lambda: [b["body"] for b in fake_stats()["bodies"]]


def test_plain_text_input(sdk):
    response = sdk.responses.create(model="dagi-stub", input="hello responses", extra_headers={"x-request-id": "req-resp-1"})
    assert response.output_text == "[stub] You said: hello responses"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0
    rows = usage_rows(request_id="req-resp-1")
    assert rows and (rows[0].endpoint, rows[0].agent_id) == ("responses", "agent:resp")


def test_message_input_instructions_and_options_reach_the_upstream(sdk, upstream):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response = sdk.responses.create(
        model="up-echo",
        instructions="be brief",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": "second"},
        ],
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        max_output_tokens=64,
        temperature=0.3,
        top_p=0.8,
        reasoning={"effort": "low"},
        user="u-1",
        extra_body={"custom_flag": 1},
    )
    assert response.output_text == "echo: second"
    [sent] = upstream()
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    assert (
        sent["max_completion_tokens"],
        sent["temperature"],
        sent["top_p"],
        sent["reasoning_effort"],
        sent["user"],
        sent["custom_flag"],
    ) == (64, 0.3, 0.8, "low", "u-1", 1)
    assert "max_tokens" not in sent and "store" not in sent


def test_max_output_tokens_makes_an_incomplete_response(sdk):
    response = sdk.responses.create(model="dagi-stub", input="one two three four five", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


def test_streamed_events(sdk):
    events = list(sdk.responses.create(model="dagi-stub", input="stream this", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert {
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    } <= set(kinds)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "[stub] You said: stream this"
    assert events[-1].response.output_text == text and events[-1].response.usage.output_tokens > 0


def test_the_sdks_stream_helper_accumulates_it(sdk):
    with sdk.responses.stream(model="dagi-stub", input="helper") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "[stub] You said: helper"


def test_function_tool_round_trip(sdk):
    first = sdk.responses.create(model="dagi-stub", input="which project exists?", tools=[TOOL], store=False)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "projects.list" and json.loads(call.arguments) == {}
    follow_up = sdk.responses.create(
        model="dagi-stub",
        tools=[TOOL],
        store=False,
        input=[
            {"role": "user", "content": "which project exists?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Roadmap"},
        ],
    )
    assert follow_up.output_text == "[stub] Based on the tool result: Roadmap"


def test_function_tool_round_trip_streamed(sdk):
    events = list(sdk.responses.create(model="dagi-stub", input="list the projects", tools=[TOOL], stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds or "response.function_call_arguments.done" in kinds
    [done] = [e for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert done.item.name == "projects.list" and done.item.status == "completed"
    assert events[-1].response.output[-1].call_id == done.item.call_id


def test_previous_response_id_continues_a_stored_conversation(sdk, upstream):
    first = sdk.responses.create(model="up-echo", input="remember me", instructions="first only")
    second = sdk.responses.create(model="up-echo", input="and now?", previous_response_id=first.id)
    assert second.output_text == "echo: and now?"
    sent = upstream()[-1]["messages"]
    assert sent == [
        {"role": "user", "content": "remember me"},
        {"role": "assistant", "content": "echo: remember me"},
        {"role": "user", "content": "and now?"},
    ], "the history, without the first call's instructions"


def test_a_stored_response_keeps_each_of_its_keys_for_the_configured_time(sdk, settings):
    from apps.llm.responses import _conversation_key, _item_key, _object_key
    from daarion.infra.redis_client import get_redis

    first = sdk.responses.create(model="dagi-stub", input="keep me")
    keys = [_object_key(first.id), _conversation_key(first.id), *(_item_key(item.id) for item in first.output)]
    ttls = [get_redis().ttl(k) for k in keys]
    assert all(0 < ttl <= settings.LLM_RESPONSES_TTL_SECONDS for ttl in ttls), dict(zip(keys, ttls))
    assert sdk.responses.retrieve(first.id).output_text == first.output_text


def test_item_references_resolve_to_stored_items(sdk, upstream):
    first = sdk.responses.create(model="up-echo", input="say something")
    message_id = first.output[0].id
    sdk.responses.create(
        model="up-echo",
        input=[
            {"role": "user", "content": "say something"},
            {"type": "item_reference", "id": message_id},
            {"role": "user", "content": "again"},
        ],
    )
    assert upstream()[-1]["messages"][1] == {"role": "assistant", "content": "echo: say something"}


def test_store_false_keeps_nothing(sdk):
    first = sdk.responses.create(model="dagi-stub", input="forget me", store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="dagi-stub", input="x", previous_response_id=first.id)
    assert (caught.value.param, caught.value.code) == ("previous_response_id", "previous_response_not_found")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="dagi-stub", input=[{"type": "item_reference", "id": first.output[0].id}])
    assert caught.value.code == "item_not_found"


def test_reasoning_becomes_a_reasoning_item(sdk, upstream):
    response = sdk.responses.create(model="up-reasoning", input="think")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "thinking about: think"
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    events = list(sdk.responses.create(model="up-reasoning", input="think", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta") == "thinking about: think"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": []}, "input"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_it(sdk, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="dagi-stub", **body)
    assert caught.value.param == param


def test_errors_and_limits_apply_as_on_chat(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="no-such", input="x")
    assert caught.value.code == "model_not_found"


def test_models_retrieve(sdk):
    model = sdk.models.retrieve("dagi-stub")
    assert (model.id, model.object) == ("dagi-stub", "model")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("no-such")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(("field", "value"), [("background", True), ("conversation", "conv_1"), ("prompt", {"id": "pmpt_1"})])
def test_responses_only_features_are_refused_by_name(sdk, field, value):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="dagi-stub", input="x", **{field: value})
    assert (caught.value.param, caught.value.code) == (field, "unsupported_parameter")


def test_max_tool_calls_and_include_are_accepted(sdk, upstream):
    response = sdk.responses.create(
        model="up-echo", input="x", max_tool_calls=2, include=["message.output_text.logprobs"], truncation="disabled"
    )
    assert response.output_text == "echo: x"
    sent = upstream()[-1]
    assert not {"max_tool_calls", "include", "truncation"} & set(sent)


def test_a_stored_response_is_retrieved_and_deleted(sdk):
    created = sdk.responses.create(model="dagi-stub", input="keep me")
    fetched = sdk.responses.retrieve(created.id)
    assert (fetched.id, fetched.output_text, fetched.status) == (created.id, "[stub] You said: keep me", "completed")
    streamed = list(sdk.responses.create(model="dagi-stub", input="keep me too", stream=True))[-1].response
    assert sdk.responses.retrieve(streamed.id).output_text == "[stub] You said: keep me too"
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(created.id)
    assert caught.value.code == "response_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="dagi-stub", input="x", previous_response_id=created.id)
    unstored = sdk.responses.create(model="dagi-stub", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
