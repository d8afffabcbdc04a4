"""The official openai SDK against our /v1: chat (stream and not), tools, embeddings,
models, and its error classes for our error statuses."""

from __future__ import annotations

import json

import openai
import pytest

from apps.llm import services
from apps.llm.tests.conftest import usage_rows, wait_for

TOOL = {
    "type": "function",
    "function": {"name": "projects.list", "description": "List projects", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture
def embed_model(stub_provider, make_model):
    return make_model("dagi-embed-stub", stub_provider, "stub-embed-16", can_embed=True)


@pytest.fixture
def client(asgi_server, make_token, stub_model, embed_model, live):
    live()
    token = make_token(scopes=["llm"], agents=["agent:sofia"])
    return openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=token, max_retries=0, timeout=30)


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model="dagi-stub",
        messages=[{"role": "user", "content": "hello sdk"}],
        temperature=0.1,
        extra_headers={"x-request-id": "req-sdk-1"},
    )
    assert completion.choices[0].message.content == "[stub] You said: hello sdk"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.model == "dagi-stub"
    rows = usage_rows(request_id="req-sdk-1")
    assert rows and rows[0].agent_id == "agent:sofia", "the token's only agent is the caller"
    assert rows[0].endpoint == "chat"


def test_chat_completion_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="dagi-stub",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[stub] You said: stream me"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_tool_calls_non_stream_and_stream(client):
    messages = [{"role": "user", "content": "what projects exist?"}]
    completion = client.chat.completions.create(model="dagi-stub", messages=messages, tools=[TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "projects.list" and json.loads(call.function.arguments) == {}
    assert completion.choices[0].finish_reason == "tool_calls"
    chunks = list(client.chat.completions.create(model="dagi-stub", messages=messages, tools=[TOOL], stream=True))
    deltas = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert deltas[0].function.name == "projects.list" and deltas[0].id


def test_embeddings_base64_and_float(client):
    result = client.embeddings.create(model="dagi-embed-stub", input=["alpha beta", "gamma"])  # the SDK asks for base64
    assert [len(item.embedding) for item in result.data] == [16, 16]
    floats = client.embeddings.create(model="dagi-embed-stub", input="alpha beta", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert result.usage.prompt_tokens == 3


def test_models_list(client):
    assert {"dagi-stub", "dagi-embed-stub"} <= {m.id for m in client.models.list()}


def test_sdk_errors(client, asgi_server, make_token):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="dagi-stub", messages=[])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="dagi-stub", input="x")
    bad = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key="dst_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="dagi-stub", messages=[{"role": "user", "content": "x"}], extra_headers={"X-Agent-Id": "agent:other"}
        )


def test_rate_limit_is_the_sdks_rate_limit_error(client, live):
    services.rate_limit_policy_create(scope="agent", subject="agent:sofia", rpm=1)
    live()

    def limited() -> bool:
        try:
            client.chat.completions.create(model="dagi-stub", messages=[{"role": "user", "content": "x"}])
        except openai.RateLimitError as exc:
            return exc.response.headers.get("retry-after") is not None
        return False

    assert wait_for(limited)


def test_x_agent_id_header_for_an_unbound_token(asgi_server, make_token, stub_model, live):
    from apps.agents.services import agent_create

    # The microDAO a call is charged to is its agent's (docs/LLM_PROXY_SPEC.md, "Whose quota").
    agent_create(agent_id="agent:cto", name="CTO", microdao_id="microdao:9", model="dagi-stub")
    live()
    sdk = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["llm"]), max_retries=0)
    sdk.chat.completions.create(
        model="dagi-stub",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"X-Agent-Id": "agent:cto", "X-Microdao-Id": "microdao:9", "x-request-id": "req-hdr-1"},
    )
    rows = usage_rows(request_id="req-hdr-1")
    assert rows and (rows[0].agent_id, rows[0].microdao_id) == ("agent:cto", "microdao:9")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Agent-Id": b"agent:\xc3\xa9"},
        {"X-Agent-Id": b"\xff\xfe"},
        {"X-Microdao-Id": b"microdao 9"},
        {"X-Channel-Id": b"c" * 201},
    ],
)
def test_id_headers_follow_the_body_ids_rule(api, make_token, bearer, stub_model, live, headers):
    # They were taken as they came (latin-1 decoded) into routing, rate limits and usage rows.
    live()
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "x"}]}
    response = api.post("/v1/chat/completions", json=body, headers={**bearer(make_token(scopes=["llm"])), **headers})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    name = next(iter(headers))
    assert (error["type"], error["param"]) == ("invalid_request_error", name)
