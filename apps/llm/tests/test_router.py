"""Routing against the fake upstream: retries, Retry-After, next deployment, fallbacks,
cooldowns shared through Redis, 400 pass-through, and 502/503/504 with every attempt."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway, router, services
from apps.llm.tests.conftest import usage_rows
from daarion.infra.errors import BadRequest, GatewayTimeout, RateLimited, ServiceUnavailable, UpstreamError

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello upstream"}]


def chat(model: str, **kwargs):
    return gateway.chat_completion_sync(model=model, messages=kwargs.pop("messages", HELLO), **kwargs)


def test_answer_through_an_openai_compatible_upstream(fake_provider, make_model, fake_stats):
    make_model("remote", fake_provider, "echo")
    result = chat("remote", temperature=0.2, max_tokens=50)
    assert result.content == "echo: hello upstream"
    assert result.usage == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert (result.provider, result.model_resolved, result.upstream_model) == ("fake", "remote", "echo")
    last = fake_stats()["last"]
    assert last["headers"]["authorization"] == "Bearer sk-fake-key-123456"
    assert last["headers"]["x-test"] == "yes"
    assert last["body"]["temperature"] == 0.2 and last["body"]["max_tokens"] == 50


def test_retries_a_5xx_on_the_same_deployment(fake_provider, make_model, fake_stats, settings):
    settings.LLM_RETRY_BACKOFF = 0.01
    services.provider_update(provider=fake_provider, max_retries=2)
    make_model("flaky", fake_provider, "flaky:2:retry-test")
    result = chat("flaky", request_id="req-flaky")
    assert result.content == "echo: hello upstream"
    assert fake_stats()["requests"]["flaky:2:retry-test"] == 3
    row = usage_rows(request_id="req-flaky")[0]
    assert (row.status, row.attempts) == ("ok", 3)


def test_429_honours_retry_after_then_falls_back(fake_provider, make_model, fake_stats):
    services.provider_update(provider=fake_provider, max_retries=1)
    make_model("backup", fake_provider, "echo")
    make_model("busy", fake_provider, "error:429:0.2", fallbacks=["backup"])
    result = chat("busy")
    assert result.model_resolved == "backup"
    assert fake_stats()["requests"]["error:429:0.2"] == 2, "one retry after the Retry-After wait"


def test_a_long_retry_after_moves_on_at_once(fake_provider, make_model, fake_stats, settings):
    settings.LLM_MAX_RETRY_AFTER = 1.0
    services.provider_update(provider=fake_provider, max_retries=3)
    make_model("backup", fake_provider, "echo")
    make_model("busy", fake_provider, "error:429:120", fallbacks=["backup"])
    assert chat("busy").model_resolved == "backup"
    assert fake_stats()["requests"]["error:429:120"] == 1


def test_a_failing_deployment_hands_over_to_the_next(fake_provider, make_model, fake_stats):
    make_model("pair", fake_provider, "error:503", weight=1000)
    make_model("pair", fake_provider, "echo", weight=1)
    for _ in range(3):
        assert chat("pair").upstream_model == "echo"


def test_upstream_400_comes_back_as_400_without_fallback(fake_provider, make_model, fake_stats):
    make_model("backup", fake_provider, "echo")
    make_model("strict", fake_provider, "bad-request", fallbacks=["backup"])
    with pytest.raises(BadRequest) as info:
        chat("strict")
    assert info.value.type == "upstream_bad_request"
    assert "messages[0].content is too long" in info.value.message
    assert "echo" not in fake_stats()["requests"]


def test_all_failed_is_502_with_every_attempt(fake_provider, make_model):
    make_model("broken", fake_provider, "error:500")
    make_model("broken", fake_provider, "malformed")
    with pytest.raises(UpstreamError) as info:
        chat("broken", request_id="req-broken")
    attempts = info.value.details["attempts"]
    assert sorted(a["upstream_model"] for a in attempts) == ["error:500", "malformed"]
    assert {a["error_type"] for a in attempts} == {"server", "malformed"}
    assert info.value.status == 502
    row = usage_rows(request_id="req-broken")[0]
    assert (row.status, row.error_type, row.attempts) == ("error", "upstream_error", 2)


def test_all_timed_out_is_504(fake_provider, make_model):
    services.provider_update(provider=fake_provider, timeout_seconds=0.3)
    make_model("sleepy", fake_provider, "hang")
    with pytest.raises(GatewayTimeout) as info:
        chat("sleepy")
    assert info.value.status == 504
    assert info.value.details["attempts"][0]["error_type"] == "timeout"


def test_connection_refused_is_a_connection_error(db, make_model):
    dead = services.provider_create(name="dead", kind="vllm", base_url="http://127.0.0.1:9", max_retries=0)
    make_model("gone", dead, "x")
    with pytest.raises(UpstreamError) as info:
        chat("gone")
    assert info.value.details["attempts"][0]["error_type"] == "connection"


def test_failing_deployment_cools_down_for_every_process(fake_provider, make_model, settings, fake_stats):
    settings.LLM_COOLDOWN_FAILURES = 2
    settings.LLM_COOLDOWN_SECONDS = 30
    make_model("backup", fake_provider, "echo")
    model = make_model("shaky", fake_provider, "error:500", fallbacks=["backup"])
    deployment_id = model.deployments.get().pk
    for _ in range(2):
        assert chat("shaky").model_resolved == "backup"
    assert fake_stats()["requests"]["error:500"] == 2
    # A fresh Health (another process's view) sees the cooldown in Redis.
    assert async_to_sync(router.Health().cooled)([str(deployment_id)]) == {str(deployment_id)}
    result = chat("shaky")
    assert result.model_resolved == "backup"
    assert fake_stats()["requests"]["error:500"] == 2, "the cooled deployment is skipped"
    services.logical_model_update(model=model, fallbacks=[])
    with pytest.raises(ServiceUnavailable) as info:
        chat("shaky")
    assert info.value.type == "no_deployment"
    assert info.value.details["attempts"][0]["error_type"] == "cooling_down"


def test_tool_ids_are_mapped_to_valid_names_upstream(fake_provider, make_model, fake_stats):
    make_model("tooly", fake_provider, "tools")
    tool = {"type": "function", "function": {"name": "projects.list", "parameters": {"type": "object"}}}
    result = chat("tooly", messages=[{"role": "user", "content": "projects?"}], tools=[tool])
    assert fake_stats()["last"]["body"]["tools"][0]["function"]["name"] == "projects_list"
    assert result.tool_calls[0].name == "projects.list"
    assert json.loads(result.tool_calls[0].arguments) == {"limit": 3}
    history = [
        {"role": "user", "content": "projects?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_fake_1", "type": "function", "function": {"name": "projects.list", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_fake_1", "content": "Roadmap, Treasury"},
    ]
    result = chat("tooly", messages=history, tools=[tool])
    sent = fake_stats()["last"]["body"]["messages"][1]["tool_calls"][0]["function"]["name"]
    assert sent == "projects_list"
    assert result.content == "tool said: Roadmap, Treasury"


def test_tool_names_map_reversibly_without_collisions():
    names = router.ToolNames(
        [
            {"function": {"name": "projects.list"}},
            {"function": {"name": "projects_list"}},
            {"function": {"name": "a" * 80}},
        ]
    )
    upstream = [names.to_upstream[n] for n in ("projects.list", "projects_list", "a" * 80)]
    assert len(set(upstream)) == 3
    assert all(len(n) <= 64 for n in upstream)
    assert [names.back(n) for n in upstream] == ["projects.list", "projects_list", "a" * 80]


def stream(**kwargs) -> list[gateway.StreamEvent]:
    async def collect() -> list[gateway.StreamEvent]:
        return [event async for event in gateway.stream_chat_completion(**kwargs)]

    return async_to_sync(collect)()


def test_stream_through_the_upstream_with_usage(fake_provider, make_model):
    make_model("remote", fake_provider, "echo")
    events = stream(model="remote", messages=HELLO)
    assert "".join(e.text for e in events if e.kind == "text") == "echo: hello upstream"
    assert events[-1].usage.as_dict() == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


def test_stream_falls_back_before_the_first_token(fake_provider, make_model):
    make_model("backup", fake_provider, "echo")
    make_model("down", fake_provider, "error:500", fallbacks=["backup"])
    events = stream(model="down", messages=HELLO)
    assert events[-1].model_resolved == "backup"


def test_stream_failing_midway_raises_and_records_partial_usage(fake_provider, make_model):
    make_model("garbled", fake_provider, "badstream")
    received = []

    async def consume() -> None:
        async for event in gateway.stream_chat_completion(model="garbled", messages=HELLO, request_id="req-garbled"):
            received.append(event)

    with pytest.raises(UpstreamError):
        async_to_sync(consume)()
    assert received and received[0].kind == "text"
    row = usage_rows(request_id="req-garbled")[0]
    assert (row.status, row.error_type, row.stream) == ("error", "upstream_malformed", True)
    assert row.completion_tokens >= 1


def test_stream_tool_call_deltas(fake_provider, make_model):
    make_model("tooly", fake_provider, "tools")
    tool = {"type": "function", "function": {"name": "projects.list", "parameters": {"type": "object"}}}
    events = stream(model="tooly", messages=HELLO, tools=[tool])
    calls = [e for e in events if e.kind == "tool_call"]
    assert calls[0].name == "projects.list" and calls[0].id == "call_fake_1"
    assert "".join(e.arguments for e in calls) == '{"limit": 3}'
    assert events[-1].finish_reason == "tool_calls"


def test_embeddings_through_the_upstream(fake_provider, make_model):
    make_model("embedder", fake_provider, "text-embed", can_embed=True)
    result = gateway.create_embeddings_sync(model="embedder", inputs=["a b", "c"])
    assert len(result.vectors) == 2 and len(result.vectors[0]) == 8
    assert result.usage["prompt_tokens"] == 3


def test_embeddings_need_an_embedding_model(fake_provider, make_model):
    make_model("chatonly", fake_provider, "echo")
    with pytest.raises(BadRequest) as info:
        gateway.create_embeddings_sync(model="chatonly", inputs=["x"])
    assert info.value.type == "model_cannot_embed"


# --- the Anthropic adapter against the fake's /v1/messages ---------------------------------


@pytest.fixture
def anthropic_model(db, fake_llm, make_model):
    provider = services.provider_create(
        name="claude", kind="anthropic", base_url=fake_llm, api_key="sk-ant-123456789", max_retries=0
    )
    return make_model("claude-x", provider, "claude-test")


def test_anthropic_chat_converts_system_and_usage(anthropic_model, fake_stats):
    result = chat("claude-x", messages=[{"role": "system", "content": "be nice"}, *HELLO])
    assert result.content == "echo: hello upstream (system: be nice)"
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    last = fake_stats()["last"]
    assert last["path"] == "/v1/messages"
    assert last["headers"]["x-api-key"] == "sk-ant-123456789"
    assert last["body"]["system"] == "be nice" and last["body"]["max_tokens"] == 1024


def test_anthropic_tools_round_trip(anthropic_model, fake_stats):
    tool = {"type": "function", "function": {"name": "projects.list", "description": "d", "parameters": {"type": "object"}}}
    result = chat("claude-x", tools=[tool], tool_choice="required")
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0].name == "projects.list"
    assert json.loads(result.tool_calls[0].arguments) == {"limit": 3}
    body = fake_stats()["last"]["body"]
    assert body["tools"][0] == {"name": "projects_list", "description": "d", "input_schema": {"type": "object"}}
    assert body["tool_choice"] == {"type": "any"}
    history = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_fake", "type": "function", "function": {"name": "projects.list", "arguments": '{"limit": 3}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_fake", "content": "Roadmap"},
    ]
    result = chat("claude-x", messages=history, tools=[tool])
    assert result.content == "tool said: Roadmap"
    sent = fake_stats()["last"]["body"]["messages"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": "toolu_fake", "name": "projects_list", "input": {"limit": 3}}
    assert sent[2]["content"][0]["type"] == "tool_result"


def test_anthropic_stream_events(anthropic_model):
    events = stream(model="claude-x", messages=HELLO)
    assert "".join(e.text for e in events if e.kind == "text") == "echo: hello upstream"
    assert events[-1].usage.as_dict() == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_a_deployment_over_its_own_rpm_cap_is_skipped(fake_provider, make_model, fake_stats):
    model = make_model("capped", fake_provider, "echo")
    services.deployment_update(deployment=model.deployments.get(), rpm_limit=1)
    make_model("capped", fake_provider, "echo-second", weight=1)
    services.deployment_update(deployment=model.deployments.get(upstream_model="echo-second"), rpm_limit=1)
    served = {chat("capped").upstream_model, chat("capped").upstream_model}
    assert served == {"echo", "echo-second"}, "the second call goes to the deployment with room"
    with pytest.raises(RateLimited) as info:
        chat("capped")
    assert {a["error_type"] for a in info.value.details["attempts"]} == {"deployment_rate_limited"}


def test_a_hosted_provider_without_a_key_is_skipped_without_a_call(stub_model, make_model, monkeypatch):
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    keyless = services.provider_create(name="oa", kind="openai", base_url="http://127.0.0.1:9", api_key_env="TEST_ABSENT_KEY")
    make_model("gpt-x", keyless, "gpt-x", fallbacks=["dagi-stub"])
    result = chat("gpt-x")
    assert result.model_resolved == "dagi-stub"
    services.logical_model_update(model=services.LogicalModel.objects.get(name="gpt-x"), fallbacks=[])
    with pytest.raises(ServiceUnavailable) as info:
        chat("gpt-x")
    attempt = info.value.details["attempts"][0]
    assert attempt["error_type"] == "no_api_key" and "TEST_ABSENT_KEY" in attempt["message"]


def test_history_tool_names_are_mapped_even_without_tools(fake_provider, make_model, fake_stats):
    make_model("remote", fake_provider, "echo")
    history = [
        {"role": "user", "content": "projects?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "projects.list", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Roadmap"},
        {"role": "user", "content": "thanks"},
    ]
    chat("remote", messages=history)
    assert fake_stats()["last"]["body"]["messages"][1]["tool_calls"][0]["function"]["name"] == "projects_list"
