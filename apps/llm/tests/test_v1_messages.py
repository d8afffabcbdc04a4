"""POST /v1/messages with the official anthropic SDK: plain, streamed, tools, errors in
Anthropic's shape, x-api-key or Bearer service tokens; served by any provider kind."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from apps.llm import services
from apps.llm.tests.conftest import usage_rows

TOOL = {"name": "projects_list", "description": "List projects", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture
def token(make_token) -> str:
    return make_token(scopes=["llm"], agents=["agent:claude-code"])


@pytest.fixture
def client(asgi_server, token, stub_model, live) -> anthropic.Anthropic:
    live()
    return anthropic.Anthropic(base_url=asgi_server.url, api_key=token, max_retries=0, timeout=30)


def test_a_message_with_x_api_key(client):
    message = client.messages.create(
        model="dagi-stub",
        max_tokens=100,
        system="be kind",
        messages=[{"role": "user", "content": "hello claude"}],
        extra_headers={"x-request-id": "req-msg-1"},
    )
    assert message.content[0].type == "text" and message.content[0].text == "[stub] You said: hello claude"
    assert (message.role, message.stop_reason, message.model) == ("assistant", "end_turn", "dagi-stub")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    rows = usage_rows(request_id="req-msg-1")
    assert rows and (rows[0].endpoint, rows[0].agent_id) == ("messages", "agent:claude-code")


def test_a_bearer_token_works_too(asgi_server, token, stub_model, live):
    live()
    bearer = anthropic.Anthropic(base_url=asgi_server.url, auth_token=token, max_retries=0)
    message = bearer.messages.create(model="dagi-stub", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "[stub] You said: hi"


def test_streamed(client):
    with client.messages.stream(model="dagi-stub", max_tokens=100, messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "[stub] You said: stream me"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_tools_round_trip_plain_and_streamed(client):
    ask = [{"role": "user", "content": "which projects are there?"}]
    first = client.messages.create(model="dagi-stub", max_tokens=100, messages=ask, tools=[TOOL])
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert (use.name, use.input) == ("projects_list", {})
    follow_up = client.messages.create(
        model="dagi-stub",
        max_tokens=100,
        tools=[TOOL],
        messages=[
            *ask,
            {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Roadmap"}]},
        ],
    )
    assert follow_up.content[0].text == "[stub] Based on the tool result: Roadmap"
    with client.messages.stream(model="dagi-stub", max_tokens=100, messages=ask, tools=[TOOL]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].type == "tool_use"
    assert (final.content[0].name, final.content[0].input) == ("projects_list", {})


def test_served_by_an_openai_compatible_upstream_with_options(asgi_server, token, fake_provider, make_model, fake_stats, live):
    make_model("up-reasoning", fake_provider, "reasoning")
    live()
    client = anthropic.Anthropic(base_url=asgi_server.url, api_key=token, max_retries=0)
    # temperature and top_p are no longer in the current SDK's signature; older clients send them.
    message = client.messages.create(
        model="up-reasoning",
        max_tokens=64,
        system="sys",
        extra_body={"temperature": 0.2, "top_p": 0.9},
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "think"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "thinking about: think" and message.content[1].text == "echo: think"
    sent = fake_stats()["last"]["body"]
    assert sent["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "think"}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"], sent["user"]) == (64, 0.2, 0.9, ["END"], "u-1")
    with client.messages.stream(model="up-reasoning", max_tokens=64, messages=[{"role": "user", "content": "think"}]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"] and final.content[1].text == "echo: think"


def test_errors_are_anthropics(asgi_server, client, stub_model):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="dagi-stub", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": caught.value.body["error"]["message"]},
    }
    assert "max_tokens" in caught.value.body["error"]["message"]
    bad = anthropic.Anthropic(base_url=asgi_server.url, api_key="dst_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="dagi-stub", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_rate_limits_apply(client, live):
    services.rate_limit_policy_create(scope="agent", subject="agent:claude-code", rpm=1)
    live()
    from apps.llm.tests.conftest import wait_for

    def limited() -> bool:
        try:
            client.messages.create(model="dagi-stub", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        except anthropic.RateLimitError as exc:
            return exc.body["error"]["type"] == "rate_limit_error" and exc.response.headers.get("retry-after") is not None
        return False

    assert wait_for(limited)


def test_the_x_api_key_header_is_only_for_this_door(asgi_server, token, stub_model, live):
    live()
    answer = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        headers={"x-api-key": token},
        json={"model": "dagi-stub", "messages": [{"role": "user", "content": "x"}]},
    )
    assert answer.status_code == 401


def test_an_anthropic_upstream_gets_anthropics_own_options(asgi_server, token, fake_llm, make_model, fake_stats, live):
    provider = services.provider_create(
        name="claude", kind="anthropic", base_url=fake_llm, api_key="sk-ant-123456789", max_retries=0
    )
    make_model("claude-x", provider, "thinking-claude")
    live()
    client = anthropic.Anthropic(base_url=asgi_server.url, api_key=token, max_retries=0)
    message = client.messages.create(
        model="claude-x",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"top_k": 5},
        messages=[{"role": "user", "content": "deep"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    sent = fake_stats()["last"]["body"]
    assert (sent["thinking"], sent["top_k"], sent["max_tokens"]) == ({"type": "enabled", "budget_tokens": 1024}, 5, 2048)


def test_count_tokens_estimates(client):
    short = client.messages.count_tokens(model="dagi-stub", messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(model="dagi-stub", messages=[{"role": "user", "content": "hi " * 400}], tools=[TOOL])
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such", messages=[{"role": "user", "content": "hi"}])


def test_output_config_maps_to_effort_and_a_json_schema(asgi_server, token, fake_provider, make_model, fake_stats, live):
    make_model("up-echo", fake_provider, "echo")
    live()
    client = anthropic.Anthropic(base_url=asgi_server.url, api_key=token, max_retries=0)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.messages.create(
        model="up-echo",
        max_tokens=20,
        messages=[{"role": "user", "content": "x"}],
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": schema}},
    )
    sent = fake_stats()["last"]["body"]
    assert sent["reasoning_effort"] == "low"
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
