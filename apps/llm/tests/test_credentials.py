"""Per-call provider keys (an agent's own key) over real HTTP to the fake upstream: used for
that call only, per request (never on the shared pooled client), never shown in reprs."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway, router, services
from apps.llm.providers import ChatRequest
from daarion.infra.errors import ServiceUnavailable, UpstreamError

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]
AGENT_KEY = "sk-agent-own-9f8e7d"
OTHER_KEY = "sk-other-agent-1a2b3c"


def _auth(stats: dict) -> list[str | None]:
    return [entry["authorization"] for entry in stats["auth"]]


def test_a_call_with_credentials_carries_its_key_and_the_next_call_the_providers(fake_provider, make_model, fake_stats):
    make_model("echo-model", fake_provider, "echo")
    gateway.chat_completion_sync(model="echo-model", messages=HELLO, agent_id="agent:a", credentials={"fake": AGENT_KEY})
    gateway.chat_completion_sync(model="echo-model", messages=HELLO, agent_id="agent:b")
    gateway.chat_completion_sync(model="echo-model", messages=HELLO, credentials={"another-provider": OTHER_KEY})
    assert _auth(fake_stats()) == [f"Bearer {AGENT_KEY}", "Bearer sk-fake-key-123456", "Bearer sk-fake-key-123456"]
    # The provider's other default headers still go with an overriding key.
    assert fake_stats()["last"]["headers"]["x-test"] == "yes"


def test_concurrent_calls_on_one_pooled_client_each_carry_their_own_key(fake_provider, make_model, fake_stats):
    make_model("slow-model", fake_provider, "slow:0.2")

    async def both() -> None:
        await asyncio.gather(
            *[
                gateway.chat_completion(
                    model="slow-model",
                    messages=[{"role": "user", "content": f"n{i}"}],
                    credentials={"fake": f"sk-caller-{i}"} if i % 2 else None,
                )
                for i in range(6)
            ]
        )

    async_to_sync(both)()
    seen = sorted(_auth(fake_stats()))
    assert seen == sorted([f"Bearer sk-caller-{i}" for i in (1, 3, 5)] + ["Bearer sk-fake-key-123456"] * 3)


def test_streams_and_embeddings_use_the_call_key(fake_provider, make_model, fake_stats):
    make_model("echo-model", fake_provider, "echo")
    make_model("embed-model", fake_provider, "embed", can_embed=True)

    async def stream() -> list[gateway.StreamEvent]:
        return [
            e async for e in gateway.stream_chat_completion(model="echo-model", messages=HELLO, credentials={"fake": AGENT_KEY})
        ]

    events = async_to_sync(stream)()
    assert events[-1].kind == "finish"
    result = gateway.create_embeddings_sync(model="embed-model", inputs=["a b"], credentials={"fake": OTHER_KEY})
    assert len(result.vectors) == 1
    assert _auth(fake_stats()) == [f"Bearer {AGENT_KEY}", f"Bearer {OTHER_KEY}"]


def test_anthropic_gets_the_call_key_as_x_api_key(fake_llm, make_model, fake_stats):
    provider = services.provider_create(
        name="claude", kind="anthropic", base_url=fake_llm, api_key="sk-ant-provider", timeout_seconds=2.0, max_retries=0
    )
    make_model("claude-model", provider, "echo")
    gateway.chat_completion_sync(model="claude-model", messages=HELLO, credentials={"claude": "sk-ant-agent"})
    gateway.chat_completion_sync(model="claude-model", messages=HELLO)
    assert [e["x-api-key"] for e in fake_stats()["auth"]] == ["sk-ant-agent", "sk-ant-provider"]


def test_a_keyless_hosted_provider_serves_only_callers_with_their_own_key(fake_llm, make_model, fake_stats):
    provider = services.provider_create(name="openai", kind="openai", base_url=fake_llm, timeout_seconds=2.0, max_retries=0)
    make_model("gpt-x", provider, "echo")
    with pytest.raises(ServiceUnavailable) as info:
        gateway.chat_completion_sync(model="gpt-x", messages=HELLO)
    assert info.value.type == "no_deployment"
    assert info.value.details["attempts"][0]["error_type"] == "no_api_key"
    result = gateway.chat_completion_sync(model="gpt-x", messages=HELLO, credentials={"openai": AGENT_KEY})
    assert result.content == "echo: hello"
    assert _auth(fake_stats()) == [f"Bearer {AGENT_KEY}"]


def test_keys_never_show_in_reprs():
    ctx = router.CallContext(agent_id="agent:a", credentials={"fake": AGENT_KEY})
    request = ChatRequest(messages=HELLO, api_key=AGENT_KEY)
    assert AGENT_KEY not in repr(ctx) and AGENT_KEY not in repr(request)


def test_agent_secrets_name_provider_keys_by_convention(fake_provider, stub_model, make_model):
    make_model("echo-model", fake_provider, "echo")
    services.provider_create(name="openai-eu", kind="openai_compatible", base_url="http://127.0.0.1:9")
    assert gateway.provider_secret_name("openai-eu") == "OPENAI_EU_API_KEY"
    assert gateway.provider_secret_name("fake") == "FAKE_API_KEY"
    secrets = {"FAKE_API_KEY": AGENT_KEY, "STUB_API_KEY": "", "VENDOR_TOKEN": "x", "OPENAI_EU_API_KEY": OTHER_KEY}
    # Only providers that serve a model count (openai-eu has no deployment); empty values never.
    assert async_to_sync(gateway.credentials_from_secrets)(secrets) == {"fake": AGENT_KEY}
    assert async_to_sync(gateway.credentials_from_secrets)({"VENDOR_TOKEN": "x"}) == {}


def test_a_bad_per_agent_key_cools_down_only_itself(fake_provider, make_model, settings, fake_stats):
    # Issue #18 item 4: three 401s on one agent's own key put the shared deployment in a
    # cooldown, and every other agent got 503 no_deployment.
    settings.LLM_COOLDOWN_FAILURES = 3
    settings.LLM_COOLDOWN_SECONDS = 30
    model = make_model("shared", fake_provider, "keycheck")
    bad = {"fake": "sk-bad-agent-key-000"}
    for _ in range(3):
        with pytest.raises(UpstreamError):
            gateway.chat_completion_sync(model="shared", messages=HELLO, agent_id="agent:careless", credentials=bad)
    # The bad key is now cooling down, on its own: its next call does not reach the upstream.
    with pytest.raises(ServiceUnavailable) as info:
        gateway.chat_completion_sync(model="shared", messages=HELLO, agent_id="agent:careless", credentials=bad)
    assert info.value.details["attempts"][0]["error_type"] == "cooling_down"
    assert fake_stats()["requests"]["keycheck"] == 3
    # Every other caller is served: the provider's key, and another agent's own key.
    assert gateway.chat_completion_sync(model="shared", messages=HELLO, agent_id="agent:b").content == "echo: hello"
    assert (
        gateway.chat_completion_sync(model="shared", messages=HELLO, agent_id="agent:c", credentials={"fake": AGENT_KEY}).content
        == "echo: hello"
    )
    deployment_id = model.deployments.get().pk
    assert async_to_sync(router.Health().cooled)([str(deployment_id)]) == set()
