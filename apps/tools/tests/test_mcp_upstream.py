"""Upstream MCP servers as tool sources: a reference server built with the SDK (MCPServer) runs
as a real process on 127.0.0.1; its tools are synced, called through POST /internal/tools/call,
through /mcp, and in an agent turn, under the egress rules of http tools."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.tools.models import McpServer, Tool, ToolCall
from apps.tools.services import mcp_server_create, mcp_server_delete, mcp_server_sync, mcp_server_update
from apps.tools.tests.conftest import run, wait_for, wait_until_served
from devtools.testing import BASE_DIR, free_port


def _whoami(key: str) -> dict[str, str]:
    """What the reference server's whoami answers for a call that carried `key`."""
    return {"api_key_sha256": hashlib.sha256(key.encode()).hexdigest()}


REFERENCE_TOOLS = ["ref.add", "ref.fail", "ref.forecast", "ref.whoami"]


class Upstream:
    """The reference server in its own process; restart() brings it back with other tools."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen | None = None

    def start(self, *without: str) -> None:
        args = [sys.executable, "-m", "apps.tools.tests.mcp_upstream", "--port", str(self.port)]
        for name in without:
            args += ["--without", name]
        self.process = subprocess.Popen(args, cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the reference MCP server exited early")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the reference MCP server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self, *without: str) -> None:
        self.stop()
        self.start(*without)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def reference(upstream, allow_local, make_agents, transactional_db) -> McpServer:
    """The reference server registered as `ref` for agent:sofia, its tools synced."""
    make_agents("agent:sofia", "agent:cto")
    server = mcp_server_create(
        name="ref",
        url=upstream.url,
        prefix="ref",
        allowed_agents=["agent:sofia"],
        secret_headers={"X-Api-Key": "upstream-key-1"},
        sync=False,
    )
    report = mcp_server_sync(server=server)
    assert report.ok, report.error
    return McpServer.objects.get(pk=server.pk)


def test_the_sync_upserts_the_upstream_tools(reference):
    tools = {t.tool_id: t for t in Tool.objects.filter(mcp_server=reference)}
    assert sorted(tools) == REFERENCE_TOOLS
    forecast = tools["ref.forecast"]
    assert (forecast.executor, forecast.target, forecast.name) == ("mcp", "forecast", "Weather forecast")
    assert forecast.input_schema["required"] == ["city"]
    assert set(forecast.output_schema["properties"]) == {"city", "temp_c", "summary"}
    assert forecast.read_only and forecast.idempotent and not forecast.destructive
    # The server's permissions are the tools' own until a tool is changed on its own.
    assert all(t.allowed_agents == ["agent:sofia"] and t.enabled for t in tools.values())
    assert reference.protocol_version == "2026-07-28" and reference.last_synced_at is not None

    again = mcp_server_sync(server=reference)
    assert sorted(again.unchanged) == REFERENCE_TOOLS and not again.created and not again.disabled


def test_a_call_through_the_rest_door_reaches_the_upstream(reference, tools_server, tools_api, make_token, bearer):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])
    wait_until_served(tools_api, token, set(REFERENCE_TOOLS))

    def call(tool_id, args, status=200):
        response = tools_api.post(
            "/internal/tools/call",
            headers=bearer(token),
            json={"tool_id": tool_id, "agent_id": "agent:sofia", "microdao_id": "microdao:7", "args": args},
        )
        assert response.status_code == status, response.text
        return response.json()

    forecast = call("ref.forecast", {"city": "Kyiv"})
    assert forecast["ok"] is True, forecast
    assert forecast["result"] == {"city": "Kyiv", "temp_c": 21.5, "summary": "sunny in Kyiv"}
    assert call("ref.add", {"a": 2, "b": 40})["result"] == {"result": 42}
    # The server's secret header reached the upstream (and only it: the value is nowhere else).
    assert call("ref.whoami", {})["result"] == _whoami("upstream-key-1")
    failed = call("ref.fail", {"reason": "disk on fire"})
    assert (failed["ok"], failed["error_type"]) == (False, "upstream_tool_error") and "disk on fire" in failed["error"]
    invalid = call("ref.add", {"a": "two"}, status=422)  # checked here, against the synced schema
    assert invalid["error"]["type"] == "invalid_args" and "$.b" in invalid["error"]["message"]

    row = wait_for(lambda: ToolCall.objects.filter(request_id=forecast["request_id"]).first(), message="audit row")
    assert (row.tool_id, row.agent_id, row.status, row.args) == ("ref.forecast", "agent:sofia", "ok", {"city": "Kyiv"})
    assert "upstream-key-1" not in json.dumps(list(ToolCall.objects.values_list("args", "error")))


def test_the_calling_agent_s_secret_reaches_the_upstream_as_a_header(reference, tools_server, tools_api, make_token, bearer):
    from apps.agents.models import Agent
    from apps.agents.services import agent_secret_set

    # The server's own X-Api-Key gives way to a per-agent one: each agent calls with its key.
    server = mcp_server_update(
        server=reference, secret_headers={"X-Api-Key": None}, agent_secret_headers={"X-Api-Key": "WEATHER_KEY"}
    )
    assert Tool.objects.get(tool_id="ref.whoami").agent_secret_headers == {"X-Api-Key": "WEATHER_KEY"}
    agent_secret_set(agent=Agent.objects.get(pk="agent:sofia"), name="WEATHER_KEY", value="sofia-key-77")
    token = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])
    wait_until_served(tools_api, token, set(REFERENCE_TOOLS))

    def whoami(agent_id):
        return tools_api.post(
            "/internal/tools/call",
            headers=bearer(token),
            json={"tool_id": "ref.whoami", "agent_id": agent_id, "microdao_id": "microdao:7", "args": {}},
        ).json()

    assert wait_for(
        lambda: whoami("agent:sofia").get("result") == _whoami("sofia-key-77"), message="the agent's key at the upstream"
    )
    mcp_server_update(server=McpServer.objects.get(pk=server.pk), allowed_agents=["agent:sofia", "agent:cto"])
    missing = wait_for(
        lambda: (r := whoami("agent:cto")).get("error_type") == "missing_secret" and r,
        message="the CTO's call refused for want of the secret",
    )
    assert "WEATHER_KEY" in missing["error"] and "sofia-key-77" not in json.dumps(missing)


def test_an_upstream_tool_through_our_own_mcp_door(reference, tools_server, tools_api, make_token):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])
    wait_until_served(tools_api, token, set(REFERENCE_TOOLS))

    async def scenario():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with Client(streamable_http_client(f"{tools_server.url}/mcp", http_client=http)) as client:
            listed = []
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                listed += page.tools
                if not (cursor := page.next_cursor):
                    break
            return listed, await client.call_tool("ref.forecast", {"city": "Lviv"})

    listed, result = run(scenario())
    forecast = next(t for t in listed if t.name == "ref.forecast")
    assert forecast.annotations.read_only_hint is True and forecast.output_schema["required"]
    assert result.is_error is False and result.structured_content["summary"] == "sunny in Lviv"


def test_a_tool_removed_upstream_is_disabled_after_the_next_sync(reference, upstream):
    try:
        upstream.restart("forecast")
        report = mcp_server_sync(server=reference)
        assert report.disabled == ["ref.forecast"] and sorted(report.unchanged) == ["ref.add", "ref.fail", "ref.whoami"]
        gone = Tool.objects.get(tool_id="ref.forecast")
        assert gone.enabled is False and gone.mcp_server_id == reference.pk  # disabled, never deleted

        # Back upstream, it stays disabled until someone enables it.
        upstream.restart()
        report = mcp_server_sync(server=reference)
        assert "ref.forecast" in report.updated + report.unchanged and not Tool.objects.get(tool_id="ref.forecast").enabled
    finally:
        upstream.restart()


def test_an_upstream_at_a_refused_address_is_refused_before_any_connection(settings, make_agents, transactional_db):
    # A listener that counts connections: the guard must refuse before one is opened.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        # A wildcard grant never reaches internal addresses; a host not listed is refused too.
        settings.TOOLS_HTTP_ALLOWED_HOSTS = ["*"]
        server = mcp_server_create(name="inside", url=f"http://127.0.0.1:{port}/mcp", sync=False)
        report = mcp_server_sync(server=server)
        assert "TargetRefused" in report.error and "internal address 127.0.0.1" in report.error
        assert McpServer.objects.get(pk=server.pk).last_sync_error == report.error
        settings.TOOLS_HTTP_ALLOWED_HOSTS = ["tools.example.com"]
        assert "not in TOOLS_HTTP_ALLOWED_HOSTS" in mcp_server_sync(server=server).error
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_a_call_to_an_upstream_moved_to_a_refused_address_is_refused(reference, settings, upstream):
    from apps.tools.tests.conftest import call

    assert call("ref.add", args={"a": 1, "b": 2}).ok
    mcp_server_update(server=reference, url="http://10.1.2.3:9/mcp")
    refused = call("ref.add", args={"a": 1, "b": 2})
    assert (refused.ok, refused.error_type) == (False, "target_not_allowed")
    assert "host 10.1.2.3:9 is not in TOOLS_HTTP_ALLOWED_HOSTS" in refused.error
    # Metadata addresses are refused even for a host listed by name.
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["127.0.0.1", "metadata.test"]
    mcp_server_update(server=McpServer.objects.get(pk=reference.pk), url="http://169.254.169.254/mcp")
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["127.0.0.1", "*"]
    refused = call("ref.add", args={"a": 1, "b": 2})
    assert refused.error_type == "target_not_allowed" and "metadata address" in refused.error


def test_an_upstream_that_is_down_is_a_connect_error_and_its_return_is_used(reference, upstream):
    from apps.tools.tests.conftest import call

    assert call("ref.add", args={"a": 1, "b": 2}).result == {"result": 3}
    try:
        upstream.stop()
        down = call("ref.add", args={"a": 1, "b": 2})
        assert (down.ok, down.error_type) == (False, "connect_error"), down
        assert f"127.0.0.1:{upstream.port}" in down.error
    finally:
        upstream.start()
    assert call("ref.add", args={"a": 2, "b": 2}).result == {"result": 4}


def test_server_changes_reach_its_tools(reference, make_agents):
    make_agents("agent:pm")
    own = Tool.objects.get(tool_id="ref.add")
    from apps.tools.services import tool_update

    tool_update(tool=own, allowed_agents=["agent:cto"])  # changed on its own: keeps its list
    mcp_server_update(server=reference, allowed_agents=["agent:sofia", "agent:pm"], timeout=12.0)
    lists = dict(Tool.objects.filter(mcp_server=reference).values_list("tool_id", "allowed_agents"))
    assert lists == {
        "ref.add": ["agent:cto"],
        "ref.fail": ["agent:pm", "agent:sofia"],
        "ref.forecast": ["agent:pm", "agent:sofia"],
        "ref.whoami": ["agent:pm", "agent:sofia"],
    }
    assert set(Tool.objects.filter(mcp_server=reference).values_list("timeout", flat=True)) == {12.0}

    # A disabled server's tools are disabled with it in the registry the calls read.
    from apps.tools.tests.conftest import call

    mcp_server_update(server=reference, enabled=False)
    assert call("ref.forecast", args={"city": "Rome"}).error_type == "tool_disabled"

    kept = mcp_server_delete(server=McpServer.objects.get(pk=reference.pk))
    assert kept == REFERENCE_TOOLS
    assert not Tool.objects.filter(tool_id__in=REFERENCE_TOOLS, enabled=True).exists()
    assert Tool.objects.filter(tool_id__in=REFERENCE_TOOLS).count() == 4


def test_the_command_syncs_by_name(reference, upstream):
    from django.core.management import CommandError, call_command
    from io import StringIO

    out = StringIO()
    call_command("sync_mcp_servers", "ref", stdout=out)
    assert "ref: 0 created, 0 updated, 0 disabled, 4 unchanged, protocol 2026-07-28" in out.getvalue()
    with pytest.raises(CommandError, match="no MCP server named nope"):
        call_command("sync_mcp_servers", "nope")


def test_mcp_tools_are_made_only_by_a_sync(make_tool, db):
    from daarion.infra.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="register the server"):
        make_tool("hand.made", executor="mcp", target="add")


@pytest.fixture(scope="module")
def sync_worker(server_env, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A real Celery worker on the queue tools_server sends its MCP syncs to, allowed to reach
    127.0.0.1 (the shared test worker is not, and does not consume this queue)."""
    log = tmp_path_factory.mktemp("mcp-sync-worker") / "worker.log"
    env = {**server_env, "TOOLS_HTTP_ALLOWED_HOSTS": "127.0.0.1", "TOOLS_MCP_SYNC_QUEUE": "mcp-sync-tests"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "daarion",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "-Q",
            "mcp-sync-tests",
            "--hostname",
            f"mcp-sync-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    process.wait(15)


def test_registering_a_server_over_the_registry_api_syncs_its_tools(
    upstream, sync_worker, tools_server, tools_api, make_token, make_agents, bearer
):
    make_agents("agent:sofia")
    registry = bearer(make_token(scopes=["registry"]))
    created = tools_api.post(
        "/api/registry/mcp-servers/",
        headers=registry,
        json={"name": "ref", "url": upstream.url, "allowed_agents": ["agent:sofia"]},
    )
    assert created.status_code == 201, created.text
    # Queued on commit, run by the worker: the tools appear without anyone asking for a sync.
    server = wait_for(
        lambda: McpServer.objects.filter(name="ref", last_synced_at__isnull=False).first(),
        timeout=60,
        message="the worker's sync",
    )
    assert server.last_sync_error == "" and server.protocol_version == "2026-07-28"
    assert sorted(Tool.objects.filter(mcp_server=server).values_list("tool_id", flat=True)) == REFERENCE_TOOLS
    listed = tools_api.get("/api/registry/mcp-servers/ref/", headers=registry).json()
    assert listed["tools"] == REFERENCE_TOOLS


@pytest.fixture
def scripted() -> Iterator[object]:
    from apps.agents.tests.scripted_llm import ScriptedLLM

    server = ScriptedLLM()
    yield server
    server.stop()


def test_agent_sofia_calls_an_upstream_tool_in_a_turn(reference, tools_server, tools_api, make_token, bearer, scripted):
    from apps.agents.models import Agent
    from apps.agents.services import agent_update
    from apps.llm import services as llm

    provider = llm.provider_create(
        name="scripted",
        kind="openai_compatible",
        base_url=scripted.url,
        api_key="sk-scripted-000000",
        timeout_seconds=10.0,
        max_retries=0,
    )
    llm.deployment_create(
        logical_model=llm.logical_model_create(name="script-mcp"), provider=provider, upstream_model="script-mcp"
    )
    agent_update(agent=Agent.objects.get(pk="agent:sofia"), model="script-mcp")
    # The model calls the upstream tool by its OpenAI function name, then answers.
    scripted.script("script-mcp", [{"calls": [("ref__forecast", {"city": "Odesa"})]}, {"text": "Sunny in Odesa."}])
    agents = bearer(make_token(scopes=["agents"]))
    wait_for(
        lambda: tools_api.get("/internal/agents/agent:sofia", headers=agents).json().get("model") == "script-mcp",
        message="the server to serve Sofia on script-mcp",
    )
    wait_until_served(tools_api, make_token(scopes=["tools"], agents=["agent:sofia"]), set(REFERENCE_TOOLS))
    loaded = tools_api.post("/internal/agents/agent:sofia/load", headers=agents)
    assert loaded.status_code in (200, 409), loaded.text  # 409: loaded already (an agent with no state is)

    response = tools_api.post(
        "/internal/agents/agent:sofia/chat",
        headers=agents,
        timeout=60,
        json={"message": "Weather in Odesa tomorrow?", "microdao_id": "microdao:7", "channel_id": "channel:general"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "Sunny in Odesa."
    [call] = body["tool_calls"]
    assert (call["tool_id"], call["function_name"], call["ok"]) == ("ref.forecast", "ref__forecast", True)
    assert call["result"] == {"city": "Odesa", "temp_c": 21.5, "summary": "sunny in Odesa"}
    offered = [t["function"]["name"] for t in scripted.seen("script-mcp")[0]["tools"]]
    assert "ref__forecast" in offered
    [told] = [m for m in scripted.seen("script-mcp")[1]["messages"] if m.get("role") == "tool"]
    assert json.loads(told["content"])["summary"] == "sunny in Odesa"
    row = wait_for(lambda: ToolCall.objects.filter(tool_id="ref.forecast").first(), message="the audit row")
    assert (row.agent_id, row.status, row.args) == ("agent:sofia", "ok", {"city": "Odesa"})


def test_the_admin_adds_a_server_and_its_action_syncs_it(
    admin_client, upstream, allow_local, make_agents, settings, transactional_db
):
    settings.TOOLS_MCP_SYNC_QUEUE = "mcp-sync-nobody"  # the queued sync is not what this test looks at
    make_agents("agent:sofia")
    form = {
        "name": "ref",
        "url": upstream.url,
        "transport": "streamable_http",
        "prefix": "ref",
        "description": "",
        "timeout": "30",
        "enabled": "on",
        "agent_secret_headers": "{}",
        "every_agent": "",
        "agents": "agent:sofia",
        "set_secret_headers": "X-Api-Key: adm-key-4242",
    }
    bad = admin_client.post("/admin/tools/mcpserver/add/", {**form, "url": "ftp://nope"})
    assert bad.status_code == 200 and "must be an http(s):// URL" in bad.content.decode()
    for lines, fragment in (("no colon here", "expected"), ("Content-Type: x", "set by toolcore")):
        bad = admin_client.post("/admin/tools/mcpserver/add/", {**form, "set_secret_headers": lines})
        assert bad.status_code == 200 and fragment in bad.content.decode()
    added = admin_client.post("/admin/tools/mcpserver/add/", form)
    assert added.status_code == 302, added.content.decode()[:2000]
    server = McpServer.objects.get()
    assert server.allowed_agents == ["agent:sofia"] and json.loads(server.secret_headers) == {"X-Api-Key": "adm-key-4242"}
    page = admin_client.get(f"/admin/tools/mcpserver/{server.pk}/change/").content.decode()
    assert "adm-key-4242" not in page and "4242" in page  # masked

    synced = admin_client.post("/admin/tools/mcpserver/", {"action": "sync_now", "_selected_action": [server.pk]}, follow=True)
    assert "MCP server ref: 4 created, 0 updated, 0 disabled, 0 unchanged" in synced.content.decode()
    assert sorted(Tool.objects.filter(mcp_server=server).values_list("tool_id", flat=True)) == REFERENCE_TOOLS
