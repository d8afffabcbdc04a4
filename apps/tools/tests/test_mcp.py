"""The /mcp gateway, driven by the official MCP Python SDK client over real HTTP, and by raw
HTTP for the wire details of refusals. The test server pages tools/list by 2
(TOOLS_MCP_PAGE_SIZE in the tools_server fixture)."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from apps.demo.models import Followup
from apps.tools.models import ToolCall
from apps.tools.tests.conftest import run, wait_for, wait_until_served

FOLLOWUP_INPUT = {
    "type": "object",
    "properties": {"microdao_id": {"type": "string"}, "title": {"type": "string", "minLength": 1}},
    "required": ["microdao_id", "title"],
}
FOLLOWUP_OUTPUT = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "string"}},
    "required": ["id", "title", "status"],
}
# The revision the SDK negotiates by default (a server/discover probe) and the newest one of
# the initialize handshake, which older clients speak.
CURRENT, HANDSHAKE = "2026-07-28", "2025-11-25"


@pytest.fixture
def mcp_tools(make_tool, http_target, tools_api, make_token):
    make_tool("projects.list", target=f"{http_target}/projects", allowed_agents=["agent:sofia"], read_only=True)
    make_tool(
        "followups.create",
        executor="python",
        target="followups.create",
        allowed_agents=["agent:sofia"],
        input_schema=FOLLOWUP_INPUT,
        output_schema=FOLLOWUP_OUTPUT,
    )
    make_tool("cto.only", target=f"{http_target}/echo", allowed_agents=["agent:cto"])
    make_tool("broken.target", target=f"{http_target}/fail")
    wait_until_served(tools_api, make_token(scopes=["tools"]), {"projects.list", "followups.create", "cto.only", "broken.target"})


def _session(url: str, token: str | None, mode: str = "auto", **headers: str) -> Client:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode)


async def _all_tools(client: Client) -> tuple[list, int]:
    """Every tool, following nextCursor; and how many pages that took."""
    tools, cursor, pages = [], None, 0
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            return tools, pages


@pytest.mark.parametrize("mode, version", [("auto", CURRENT), ("legacy", HANDSHAKE)])
def test_sdk_client_lists_and_calls(tools_server, tools_api, make_token, mcp_tools, mode, version):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])

    async def scenario():
        async with _session(tools_server.url, token, mode, **{"X-Microdao-Id": "microdao:7"}) as client:
            negotiated = client.protocol_version
            listed, pages = await _all_tools(client)
            projects = await client.call_tool("projects.list", {"microdao_id": "microdao:7"})
            followup = await client.call_tool("followups.create", {"microdao_id": "microdao:7", "title": "Ship it"})
            invalid = await client.call_tool("followups.create", {"microdao_id": "microdao:7"})
            failing = await client.call_tool("broken.target", {"microdao_id": "m"})
            unknown = {}
            for name in ("no.such.tool", "cto.only"):
                try:
                    await client.call_tool(name, {"microdao_id": "m"})
                except MCPError as exc:
                    unknown[name] = exc
            return negotiated, listed, pages, projects, followup, invalid, failing, unknown

    negotiated, listed, pages, projects, followup, invalid, failing, unknown = run(scenario())
    assert negotiated == version
    names = [t.name for t in listed]
    assert names == ["broken.target", "followups.create", "projects.list"]  # cto.only is not offered
    assert pages == 2
    by_name = {t.name: t for t in listed}
    assert by_name["projects.list"].annotations.read_only_hint is True
    assert by_name["broken.target"].annotations.open_world_hint is True
    assert by_name["followups.create"].output_schema["required"] == ["id", "title", "status"]

    assert projects.is_error is False
    assert json.loads(projects.content[0].text) == [{"id": "p1", "name": "One"}]

    # A tool with an output schema answers structuredContent (and the same JSON as text).
    assert followup.is_error is False
    row = Followup.objects.get()
    assert followup.structured_content["id"] == f"followup-{row.pk}" and row.agent_id == "agent:sofia"
    assert json.loads(followup.content[0].text) == followup.structured_content

    assert invalid.is_error is True and invalid.content[0].text.startswith("invalid_args:")
    assert "$.title" in invalid.content[0].text
    assert failing.is_error is True and "HTTP 503" in failing.content[0].text
    assert "Unknown tool: no.such.tool" in str(unknown["no.such.tool"])
    # A tool none of the token's agents may call is unknown too: the token is not told it exists.
    assert "Unknown tool: cto.only" in str(unknown["cto.only"])
    assert unknown["cto.only"].error.data == unknown["no.such.tool"].error.data == {"error_type": "tool_not_found"}

    # The same pipeline as the REST door: every call left an audit row with the acting agent.
    audited = wait_for(
        lambda: (rows := set(ToolCall.objects.values_list("tool_id", "agent_id", "status"))) and len(rows) >= 6 and rows,
        message="audit rows",
    )
    assert ("followups.create", "agent:sofia", "ok") in audited
    assert ("followups.create", "agent:sofia", "invalid_args") in audited
    assert ("cto.only", "agent:sofia", "denied") in audited


def test_pages_and_a_bad_cursor(tools_server, tools_api, make_token, mcp_tools):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])

    async def scenario():
        async with _session(tools_server.url, token) as client:
            first = await client.list_tools()
            second = await client.list_tools(cursor=first.next_cursor)
            try:
                await client.list_tools(cursor="!!not-ours")
            except MCPError as exc:
                return first, second, exc
            raise AssertionError("a bad cursor was accepted")

    first, second, bad = run(scenario())
    assert [t.name for t in first.tools] == ["broken.target", "followups.create"] and first.next_cursor
    assert [t.name for t in second.tools] == ["projects.list"] and second.next_cursor is None
    assert "invalid cursor" in bad.message


def test_sdk_client_with_agent_header_for_an_unbound_token(tools_server, tools_api, make_token, mcp_tools):
    token = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])

    async def scenario():
        async with _session(tools_server.url, token, **{"X-Agent-Id": "agent:cto"}) as client:
            return [t.name for t in (await _all_tools(client))[0]]

    assert run(scenario()) == ["broken.target", "cto.only"]


def test_a_denied_tool_is_a_refusal_when_the_token_may_know_it(tools_server, tools_api, make_token, mcp_tools):
    # cto.only is the CTO's: a token that may act for the CTO (or for any agent) knows it, so
    # Sofia's session gets the real refusal as a tool result, not "unknown tool".
    tokens = [make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"]), make_token(scopes=["tools"])]

    async def scenario(token):
        async with _session(tools_server.url, token, **{"X-Agent-Id": "agent:sofia"}) as client:
            return await client.call_tool("cto.only", {"microdao_id": "m"})

    for token in tokens:
        denied = run(scenario(token))
        assert denied.is_error is True and denied.content[0].text.startswith("tool_not_allowed:")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_every_refusal_is_readable_in_the_sdk_client(tools_server, tools_api, make_token, mcp_tools, mode):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    unbound = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])
    no_scope = make_token(scopes=["llm"], agents=["agent:sofia"])
    cases = {
        "no token": (None, {}, "missing Authorization header"),
        "bad token": ("not-a-token", {}, "unknown service token"),
        "no tools scope": (no_scope, {}, "lacks the 'tools' scope"),
        "no acting agent": (unbound, {}, "say which agent the call acts for (X-Agent-Id header)"),
        "another agent": (bound, {"X-Agent-Id": "agent:cto"}, "may not act for agent 'agent:cto'"),
        "agent not allowed": (unbound, {"X-Agent-Id": "agent:pm"}, "may not act for agent 'agent:pm'"),
    }

    async def attempt(token, headers):
        try:
            async with _session(tools_server.url, token, mode, **headers) as client:
                await client.list_tools()
        except MCPError as exc:
            return exc
        except BaseExceptionGroup as group:  # raised from the client's task group on connect
            matched, _ = group.split(MCPError)
            while isinstance(matched, BaseExceptionGroup):
                matched = matched.exceptions[0]
            if matched is not None:
                return matched
            raise
        return None

    for name, (token, headers, reason) in cases.items():
        refused = run(attempt(token, headers))
        assert refused is not None, name
        assert reason in refused.message, (name, refused.message)


def _rpc(api, token=None, body=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = (
        body
        if isinstance(body, bytes)
        else json.dumps(
            body
            or {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            }
        ).encode()
    )
    return api.post(
        "/mcp",
        content=content,
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
    )


def test_refusals_over_raw_http(tools_api, make_token, mcp_tools):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    any_agent = make_token(scopes=["tools"])
    no_scope = make_token(scopes=["llm"], agents=["agent:sofia"])

    missing_token = _rpc(tools_api)
    assert missing_token.status_code == 401 and missing_token.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing_token.json()["error"]["code"] == -32600
    assert missing_token.json()["error"]["data"]["type"] == "unauthorized"
    scope = _rpc(tools_api, no_scope)
    assert scope.status_code == 403 and scope.json()["error"]["data"]["type"] == "scope_not_allowed"
    missing = _rpc(tools_api, any_agent)
    assert missing.status_code == 422 and missing.json()["error"]["data"]["type"] == "agent_required"
    assert missing.json()["error"]["data"]["details"][0]["path"] == "X-Agent-Id header"
    nobody = _rpc(tools_api, make_token(scopes=["tools"], agents=[]))
    assert nobody.status_code == 403 and nobody.json()["error"]["data"]["type"] == "agent_not_allowed"
    other = _rpc(tools_api, bound, **{"X-Agent-Id": "agent:cto"})
    assert other.status_code == 403 and other.json()["error"]["data"]["type"] == "agent_not_allowed"
    ok = _rpc(tools_api, any_agent, **{"X-Agent-Id": "agent:pm", "X-Request-Id": "ci-run-7"})
    assert ok.status_code == 200 and ok.json()["result"]["protocolVersion"] == HANDSHAKE
    assert ok.headers["x-request-id"] == "ci-run-7" and ok.headers["cache-control"] == "no-store"
    # A caller's id that could not be echoed safely is replaced by one of ours.
    odd = _rpc(tools_api, any_agent, **{"X-Agent-Id": "agent:pm", "X-Request-Id": "a b;c"})
    assert odd.headers["x-request-id"].startswith("mcp-")

    parse = _rpc(tools_api, bound, b"{nope")
    assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700
    assert _rpc(tools_api, bound, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    unknown_method = _rpc(tools_api, bound, {"jsonrpc": "2.0", "id": 2, "method": "resources/list"})
    assert unknown_method.json()["error"]["code"] == -32601
    bad_params = _rpc(
        tools_api,
        bound,
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "projects.list", "arguments": [1]}},
    )
    assert bad_params.json()["error"]["code"] == -32602


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "projects.list", "arguments": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",  # deeper than a recursive parser goes
        b"[" * 50_000,  # unterminated
    ],
)
def test_bodies_that_are_not_json_are_refused(tools_api, make_token, mcp_tools, body):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    response = _rpc(tools_api, bound, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in (-32700, -32600)


def test_an_id_that_is_not_json_is_never_echoed(tools_api, make_token, mcp_tools):
    # Python's reader takes NaN; an answer echoing it would be invalid JSON. The SDK drops it.
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    response = _rpc(tools_api, bound, b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}')
    assert response.status_code < 500
    if response.content:
        json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))


def test_origin_header(tools_api, tools_server, make_token, mcp_tools):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    evil = _rpc(tools_api, bound, Origin="http://evil.example")
    assert evil.status_code == 403 and evil.json()["error"]["data"]["type"] == "origin_not_allowed"
    assert "origin 'http://evil.example' may not use this MCP server" in evil.json()["error"]["message"]
    assert _rpc(tools_api, bound, Origin=tools_server.url).status_code == 200  # same origin


# --- memory tools and agent prompts (served by apps.memory and apps.agents through
# daarion.infra.mcp_extensions) ------------------------------------------------------------------


def test_memory_tools_need_the_memory_scope_and_stay_with_the_acting_agent(tools_server, tools_api, make_token, mcp_tools):
    from apps.memory.services import memory_store

    memory_store(agent_id="agent:cto", microdao_id="microdao:7", kind="kb", content={"text": "zebra budget is secret"})
    tools_only = make_token(scopes=["tools"], agents=["agent:sofia"])
    with_memory = make_token(scopes=["tools", "memory"], agents=["agent:sofia"])

    async def names(token):
        async with _session(tools_server.url, token) as client:
            return [t.name for t in (await _all_tools(client))[0]]

    assert not [n for n in run(names(tools_only)) if n.startswith("memory.")]
    assert [n for n in run(names(with_memory)) if n.startswith("memory.")] == ["memory.forget", "memory.search", "memory.store"]

    async def scenario():
        async with _session(tools_server.url, with_memory, **{"X-Microdao-Id": "microdao:7"}) as client:
            stored = await client.call_tool("memory.store", {"text": "The zebra budget was approved on Monday"})
            found = await client.call_tool("memory.search", {"query": "zebra budget"})
            invalid = await client.call_tool("memory.search", {"limit": 3})
            forgotten = await client.call_tool("memory.forget", {"id": stored.structured_content["id"]})
            after = await client.call_tool("memory.search", {"query": "zebra budget"})
            return stored, found, invalid, forgotten, after

    stored, found, invalid, forgotten, after = run(scenario())
    assert stored.is_error is False and stored.structured_content["created"] is True
    texts = [r["text"] for r in found.structured_content["results"]]
    assert texts == ["The zebra budget was approved on Monday"]  # the CTO's memory is not Sofia's
    assert invalid.is_error is True and "invalid_args" in invalid.content[0].text and "query" in invalid.content[0].text
    assert forgotten.structured_content == {"deleted": 1}
    assert after.structured_content["results"] == []
    # Memory calls are audited with the tool calls (without their arguments).
    rows = wait_for(
        lambda: (r := list(ToolCall.objects.filter(tool_id__startswith="memory.").order_by("id"))) and len(r) >= 5 and r,
        message="memory audit rows",
    )
    assert [(r.tool_id, r.status) for r in rows][:3] == [
        ("memory.store", "ok"),
        ("memory.search", "ok"),
        ("memory.search", "invalid_args"),
    ]
    assert all(r.agent_id == "agent:sofia" and r.args is None for r in rows)

    # Without the memory scope the tool is unknown.
    async def refused():
        async with _session(tools_server.url, tools_only) as client:
            try:
                await client.call_tool("memory.search", {"query": "zebra"})
            except MCPError as exc:
                return exc

    assert "Unknown tool: memory.search" in run(refused()).message


def test_each_agent_character_is_a_prompt(tools_server, tools_api, make_token, mcp_tools):
    from apps.agents.models import Agent
    from apps.agents.services import agent_update

    agent_update(
        agent=Agent.objects.get(pk="agent:sofia"),
        system_prompt="Answer briefly.",
        character={"bio": ["Product lead of microDAO 7"], "adjectives": ["precise", "warm"]},
    )
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    both = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])

    async def scenario(token, **headers):
        async with _session(tools_server.url, token, **headers) as client:
            listed = await client.list_prompts()
            try:
                await client.get_prompt("agent:nobody")
            except MCPError as exc:
                unknown = exc
            return listed, unknown, client

    def wait_prompt():
        async def get():
            async with _session(tools_server.url, bound) as client:
                return await client.get_prompt("agent:sofia")

        return wait_for(
            lambda: "Product lead" in (p := run(get())).messages[0].content.text and p,
            message="the server to serve Sofia's new character",
        )

    prompt = wait_prompt()
    text = prompt.messages[0].content.text
    assert prompt.messages[0].role == "user"
    assert text.startswith("Answer briefly.") and "You are Sofia." in text and "precise, warm" in text

    listed, unknown, _ = run(scenario(bound))
    assert [p.name for p in listed.prompts] == ["agent:sofia"]
    assert "Unknown prompt: agent:nobody" in unknown.message
    listed, _, _ = run(scenario(both, **{"X-Agent-Id": "agent:cto"}))
    assert [p.name for p in listed.prompts] == ["agent:cto", "agent:sofia"]


def test_listening_clients_hear_that_tools_and_prompts_changed(
    tools_server, tools_api, make_token, mcp_tools, make_tool, http_target
):
    """A 2026-07-28 client's `subscriptions/listen` stream gets tools/list_changed when a tool is
    created in another process (this one, through the services), and prompts/list_changed when
    an agent's character changes; the refetch then shows the new tool. Older revisions are told
    listChanged false: a stateless server has no standing stream to send on."""
    import asyncio

    from django.db import connection
    from mcp.shared.subscriptions import PromptsListChanged, ToolsListChanged

    from apps.agents.models import Agent
    from apps.agents.services import agent_update

    token = make_token(scopes=["tools"], agents=["agent:sofia"])

    def add_tool():
        make_tool("late.tool", target=f"{http_target}/echo", allowed_agents=["agent:sofia"])
        connection.close()

    def change_character():
        agent_update(agent=Agent.objects.get(pk="agent:sofia"), character={"bio": ["Listens well"]})
        connection.close()

    async def until(sub, kind):
        async def first():
            async for event in sub:
                if isinstance(event, kind):
                    return event

        return await asyncio.wait_for(first(), 15)

    async def scenario():
        async with _session(tools_server.url, token) as client:
            capabilities = client.server_capabilities
            async with client.listen(tools_list_changed=True, prompts_list_changed=True) as sub:
                honored = sub.honored
                await asyncio.to_thread(add_tool)
                tools_event = await until(sub, ToolsListChanged)
                listed, _ = await _all_tools(client)
                await asyncio.to_thread(change_character)
                prompts_event = await until(sub, PromptsListChanged)
        async with _session(tools_server.url, token, "legacy") as legacy:
            legacy_capabilities = legacy.server_capabilities
        return capabilities, honored, tools_event, listed, prompts_event, legacy_capabilities

    capabilities, honored, tools_event, listed, prompts_event, legacy_capabilities = run(scenario())
    assert capabilities.tools.list_changed is True and capabilities.prompts.list_changed is True
    assert honored.tools_list_changed is True and honored.prompts_list_changed is True
    assert isinstance(tools_event, ToolsListChanged) and isinstance(prompts_event, PromptsListChanged)
    assert "late.tool" in {t.name for t in listed}
    assert not legacy_capabilities.tools.list_changed
