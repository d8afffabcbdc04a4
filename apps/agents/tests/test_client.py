"""daarion_client against the real server: every service it wraps, sync and async, the
streamed agent turn, and errors raised with the service's envelope."""

from __future__ import annotations

import asyncio

import pytest

from daarion_client import AsyncDaarionClient, DaarionAPIError, DaarionClient

FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Client follow-up"}


@pytest.fixture
def token(make_token) -> str:
    return make_token(scopes=["llm", "memory", "tools", "agents"])


@pytest.fixture
def client(asgi_server, token) -> DaarionClient:
    with DaarionClient(asgi_server.url, token) as c:
        yield c


def test_agents_chat_and_stream_through_the_client(client, sofia, llm_routes, scripted):
    model = llm_routes("client-chain")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Created it."}])
    sofia(model, load=False)
    assert client.agent_unload("agent:sofia")["loaded"] is False
    assert client.agent_load("agent:sofia")["loaded"] is True
    with pytest.raises(DaarionAPIError) as info:
        client.agent_load("agent:sofia")
    assert (info.value.status, info.value.type) == (409, "agent_already_loaded")
    assert info.value.envelope["error"]["details"] == {"agent_id": "agent:sofia"}
    assert any(a["id"] == "agent:sofia" for a in client.agents_list()["items"])
    assert client.agent_get("agent:sofia")["name"] == "Sofia-Prime"

    result = client.agent_chat("agent:sofia", message="make a follow-up", microdao_id="microdao:7")
    assert result["reply"] == "Created it." and result["tool_calls"][0]["ok"] is True

    chunks = list(client.agent_chat_stream("agent:sofia", message="again", session_id=result["session_id"]))
    types = [c["type"] for c in chunks]
    assert types[0] == "start" and types[-1] == "finish" and "tool-output-available" in types
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta").strip() == "Created it."

    assert client.agent_unload("agent:sofia")["loaded"] is False


def test_errors_carry_the_envelope(client, asgi_server, agents_headers):
    with pytest.raises(DaarionAPIError) as info:
        client.agent_get("agent:nobody")
    assert info.value.status == 404 and info.value.type == "agent_not_found"
    assert info.value.request_id
    with pytest.raises(DaarionAPIError) as info:
        list(client.agent_chat_stream("agent:nobody", message="hi"))
    assert info.value.status == 404
    with DaarionClient(asgi_server.url, "dst_wrong") as bad:
        with pytest.raises(DaarionAPIError) as info:
            bad.agents_list()
    assert (info.value.status, info.value.type) == (401, "unauthorized")
    with DaarionClient("http://127.0.0.1:9", "x", timeout=2) as nowhere:
        with pytest.raises(DaarionAPIError) as info:
            nowhere.agents_list()
    assert info.value.type == "transport_error" and info.value.status == 0


def test_a_stream_error_chunk_raises(client, sofia, fake_llm, transactional_db):
    from apps.llm import services

    provider = services.provider_create(
        name="fake", kind="openai_compatible", base_url=fake_llm, api_key="sk-fake-key-123456", timeout_seconds=5.0, max_retries=0
    )
    services.deployment_create(
        logical_model=services.logical_model_create(name="client-broken"), provider=provider, upstream_model="error:500"
    )
    sofia("client-broken")
    with pytest.raises(DaarionAPIError) as info:
        list(client.agent_chat_stream("agent:sofia", message="hi"))
    assert info.value.type.startswith("upstream")
    chunks = list(client.agent_chat_stream("agent:sofia", message="hi", raise_on_error=False))
    assert chunks[-1]["type"] == "error"


def test_llm_memory_and_tools_through_the_client(client, llm_routes, tools, scripted):
    answer = client.llm_proxy("dagi-stub", [{"role": "user", "content": "hello"}], agent_id="agent:sofia")
    assert answer["content"] == "[stub] You said: hello" and answer["usage"]["total_tokens"] > 0
    chunks = list(client.llm_stream("dagi-stub", [{"role": "user", "content": "hello there"}]))
    assert "".join(c.get("delta", "") for c in chunks if c["type"] == "text-delta").strip() == "[stub] You said: hello there"

    stored = client.memory_store(
        agent_id="agent:sofia", microdao_id="microdao:7", kind="kb", content={"text": "The treasury is audited every quarter."}
    )
    assert stored["ok"] is True
    hits = client.memory_query(agent_id="agent:sofia", microdao_id="microdao:7", query="treasury audited")
    assert hits["items"][0]["id"] == stored["id"]
    with pytest.raises(DaarionAPIError) as info:
        client.memory_store(agent_id="agent:sofia", microdao_id="microdao:7", kind="nonsense", content={})
    assert info.value.status == 422

    listed = client.tools_list(agent_id="agent:sofia")
    assert {t["id"] for t in listed["tools"]} >= {"followups.create"}
    called = client.tool_call(tool_id="followups.create", agent_id="agent:sofia", microdao_id="microdao:7", args=FOLLOWUP_ARGS)
    assert called["ok"] is True and called["result"]["title"] == "Client follow-up"
    with pytest.raises(DaarionAPIError) as info:
        client.tool_call(tool_id="vault.read", agent_id="agent:sofia", microdao_id="microdao:7", args={})
    assert info.value.status == 403


def test_the_async_client(asgi_server, token, sofia, llm_routes, scripted):
    model = llm_routes("client-async")
    scripted.script(model, [{"text": "Async hello."}])
    sofia(model)

    async def run() -> tuple[dict, list[dict], DaarionAPIError]:
        async with AsyncDaarionClient(asgi_server.url, token) as c:
            result = await c.agent_chat("agent:sofia", message="hi")
            chunks = [chunk async for chunk in c.agent_chat_stream("agent:sofia", message="hi")]
            try:
                await c.agent_get("agent:nobody")
            except DaarionAPIError as exc:
                return result, chunks, exc
        raise AssertionError("expected a 404")

    result, chunks, error = asyncio.run(run())
    assert result["reply"] == "Async hello."
    assert chunks[-1]["type"] == "finish"
    assert error.status == 404


def test_runs_through_the_client(client, sofia, llm_routes, scripted):
    model = llm_routes("client-runs")
    scripted.script(model, [{"text": "one two three four five six", "word_delay": 0.1}])
    sofia(model)
    run = client.run_start("agent:sofia", message="count", session_id="s-client", idempotency_key="client-k")
    assert run["status"] in ("queued", "running")
    assert client.run_start("agent:sofia", message="count", session_id="s-client", idempotency_key="client-k")["id"] == run["id"]
    events = []
    for event_id, chunk in client.run_stream(run["id"]):
        events.append((event_id, chunk))
        if chunk["type"] == "text-delta":
            break  # stop reading mid-answer, then pick up after the last event seen
    rest = list(client.run_stream(run["id"], after=events[-1][0]))
    chunks = [c for _, c in events + rest]
    assert chunks[0]["type"] == "start" and chunks[-1]["type"] == "finish"
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta").strip() == "one two three four five six"
    done = client.run_get(run["id"])
    assert done["status"] == "succeeded" and done["reply"] == "one two three four five six"
    assert [r["id"] for r in client.runs_list("agent:sofia", session_id="s-client")["items"]] == [run["id"]]
    with pytest.raises(DaarionAPIError) as info:
        client.run_cancel(run["id"])
    assert (info.value.status, info.value.type) == (409, "run_not_active")
    with pytest.raises(DaarionAPIError) as info:
        client.run_get("run-missing")
    assert (info.value.status, info.value.type) == (404, "run_not_found")


def test_the_async_client_cancels_a_run(asgi_server, token, sofia, llm_routes, scripted):
    model = llm_routes("client-async-cancel")
    scripted.script(model, [{"text": "one two three four five six seven eight", "word_delay": 0.3}])
    sofia(model)

    async def run() -> tuple[dict, list[dict]]:
        async with AsyncDaarionClient(asgi_server.url, token) as c:
            started = await c.run_start("agent:sofia", message="count")
            seen = []
            async for _, chunk in c.run_stream(started["id"]):
                seen.append(chunk)
                if chunk["type"] == "text-delta" and not any(c.get("cancelled") for c in seen):
                    seen.append({"cancelled": (await c.run_cancel(started["id"]))["status"]})
            return await c.run_get(started["id"]), seen

    final, seen = asyncio.run(run())
    assert final["status"] == "cancelled" and final["reply"]
    assert seen[-1] == {"type": "finish", "messageMetadata": {"finish_reason": "cancelled"}}
    assert [c["cancelled"] for c in seen if "cancelled" in c] == ["running"]
