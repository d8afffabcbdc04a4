"""The /mcp server, driven by the official MCP Python SDK client and by raw HTTP for refusals."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from apps.tools.models import Followup
from apps.tools.tests.conftest import run, wait_until_served

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


@pytest.fixture
def mcp_tools(make_tool, http_target, tools_api, make_token):
    make_tool("projects.list", target=f"{http_target}/projects", allowed_agents=["agent:sofia"], read_only=True)
    make_tool("followups.create", executor="python", target="followups.create", allowed_agents=["agent:sofia"],
              input_schema=FOLLOWUP_INPUT, output_schema=FOLLOWUP_OUTPUT)
    make_tool("cto.only", target=f"{http_target}/echo", allowed_agents=["agent:cto"])
    make_tool("broken.target", target=f"{http_target}/fail")
    wait_until_served(tools_api, make_token(scopes=["tools"]), {"projects.list", "followups.create", "cto.only", "broken.target"})


def _session(url: str, token: str, **headers: str):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers}, timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def test_sdk_client_lists_and_calls(tools_server, tools_api, make_token, mcp_tools):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])

    async def scenario():
        async with _session(tools_server.url, token, **{"X-Microdao-Id": "microdao:7"}) as client:
            listed = await client.list_tools()
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
            return listed, projects, followup, invalid, failing, unknown

    listed, projects, followup, invalid, failing, unknown = run(scenario())
    names = [t.name for t in listed.tools]
    assert names == ["broken.target", "followups.create", "projects.list"]  # cto.only is not offered
    by_name = {t.name: t for t in listed.tools}
    assert by_name["projects.list"].annotations.read_only_hint is True
    assert by_name["followups.create"].output_schema["required"] == ["id", "title", "status"]

    assert projects.is_error is False
    assert json.loads(projects.content[0].text) == [{"id": "p1", "name": "One"}]

    assert followup.is_error is False
    row = Followup.objects.get()
    assert followup.structured_content["id"] == f"followup-{row.pk}" and row.agent_id == "agent:sofia"

    assert invalid.is_error is True and invalid.content[0].text.startswith("invalid_args:")
    assert "$.title" in invalid.content[0].text
    assert failing.is_error is True and "HTTP 503" in failing.content[0].text
    assert "Unknown tool: no.such.tool" in str(unknown["no.such.tool"])
    # A tool none of the token's agents may call is unknown too: the token is not told it exists.
    assert "Unknown tool: cto.only" in str(unknown["cto.only"])
    assert unknown["cto.only"].error.data == unknown["no.such.tool"].error.data == {"error_type": "tool_not_found"}


def test_sdk_client_with_agent_header_for_an_unbound_token(tools_server, tools_api, make_token, mcp_tools):
    token = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])

    async def scenario():
        async with _session(tools_server.url, token, **{"X-Agent-Id": "agent:cto"}) as client:
            return [t.name for t in (await client.list_tools()).tools]

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


def _rpc(api, token=None, body=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body or {"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    return api.post("/mcp", content=content, headers={"Content-Type": "application/json",
                                                        "Accept": "application/json, text/event-stream", **headers})


def test_refusals_over_raw_http(tools_api, make_token, mcp_tools):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    any_agent = make_token(scopes=["tools"])
    no_scope = make_token(scopes=["llm"], agents=["agent:sofia"])

    assert _rpc(tools_api).status_code == 401
    assert _rpc(tools_api).headers["WWW-Authenticate"].startswith("Bearer")
    assert _rpc(tools_api, no_scope).json()["error"]["type"] == "scope_not_allowed"
    missing = _rpc(tools_api, any_agent)
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "agent_required"
    assert _rpc(tools_api, bound, **{"X-Agent-Id": "agent:cto"}).status_code == 403
    assert _rpc(tools_api, any_agent, **{"X-Agent-Id": "agent:pm"}).json()["result"] == {}
    assert tools_api.get("/mcp", headers={"Authorization": f"Bearer {bound}"}).status_code == 405

    parse = _rpc(tools_api, bound, b"{nope")
    assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700
    assert _rpc(tools_api, bound, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    assert _rpc(tools_api, bound, {"jsonrpc": "2.0", "id": 2, "method": "resources/list"}).json()["error"]["code"] == -32601
    assert _rpc(tools_api, bound, {"id": 3, "method": "ping"}).json()["error"]["code"] == -32600
    bad_params = _rpc(tools_api, bound, {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "projects.list", "arguments": [1]}})
    assert bad_params.json()["error"]["code"] == -32602
    init = _rpc(tools_api, bound, {"jsonrpc": "2.0", "id": 5, "method": "initialize",
                                    "params": {"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert init.json()["result"]["protocolVersion"] == "2025-11-25"
    batch = _rpc(tools_api, bound, [{"jsonrpc": "2.0", "id": 6, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"}])
    assert batch.json() == [{"jsonrpc": "2.0", "id": 6, "result": {}}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "projects.list", "arguments": '
        + b"[" * 50_000 + b"]" * 50_000 + b"}}",  # deeper than the parser recurses: was a 500 page
        b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}',  # was echoed back as invalid JSON
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": Infinity}}',
    ],
)
def test_bodies_that_are_not_json_are_a_parse_error(tools_api, make_token, mcp_tools, body):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    response = _rpc(tools_api, bound, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32700


def test_origin_and_protocol_version_headers(tools_api, tools_server, make_token, mcp_tools):
    bound = make_token(scopes=["tools"], agents=["agent:sofia"])
    evil = _rpc(tools_api, bound, Origin="http://evil.example")
    assert evil.status_code == 403 and evil.json()["error"]["type"] == "origin_not_allowed"
    assert _rpc(tools_api, bound, Origin=tools_server.url).status_code == 200  # same origin
    old = _rpc(tools_api, bound, **{"MCP-Protocol-Version": "2023-01-01"})
    assert old.status_code == 400 and old.json()["error"]["details"]["supported"][0] == "2025-11-25"
    assert _rpc(tools_api, bound, **{"MCP-Protocol-Version": "2025-06-18"}).status_code == 200
