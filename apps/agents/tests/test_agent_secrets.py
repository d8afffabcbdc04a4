"""Agent secrets as credentials, end to end over real HTTP: an agent's `<PROVIDER>_API_KEY`
secret replaces the provider's key for that agent's model calls only, and an http tool that
declares an agent secret receives it as a header (a missing one fails the call, leaking
nothing). A server of its own, allowed to reach the header-recording target on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from apps.agents.services import agent_secret_set
from apps.agents.tests.conftest import wait_until
from apps.agents.tests.factories import make_agent
from apps.tools.audit import audit_flush
from apps.tools.models import ToolCall
from devtools.testing import start_asgi_server, start_celery_worker

PROVIDER_KEY = "sk-provider-key-0001"
AGENT_KEY = "sk-agent-own-key-0002"
VENDOR_TOKEN = "vendor-token-of-sofia-0003"


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": raw.decode()})
        body = json.dumps({"vendor": "answered"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def header_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def secrets_server(server_env, tmp_path_factory, header_target) -> Iterator[Any]:
    env = {
        **server_env,
        "DATABASE_POOL": "1",
        "TOOLS_HTTP_ALLOWED_HOSTS": urlsplit(header_target).netloc,
        "DAARION_AGENTS_RUN_QUEUE": "agents-secrets",
    }
    logs = tmp_path_factory.mktemp("asgi-secrets")
    # The runs' tool calls happen on the worker: it gets the same allowed host.
    worker = start_celery_worker(env, logs, queues="agents-secrets", pool="threads", concurrency=8, name="agents-secrets")
    server = start_asgi_server(env, logs)
    yield server
    server.stop()
    worker.stop()


@pytest.fixture
def client(secrets_server, transactional_db) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secrets_server.url, timeout=60) as http:
        yield http


@pytest.fixture
def fake_stats(fake_llm) -> Any:
    httpx.post(f"{fake_llm}/_reset")
    return lambda: httpx.get(f"{fake_llm}/_stats").json()


@pytest.fixture
def setup(client, fake_llm, make_token, bearer) -> dict[str, Any]:
    """Provider `fake` (key PROVIDER_KEY) serving logical model `tooled` (the fake upstream's
    `tools` behaviour: it calls the first offered tool, then answers with its result)."""
    from apps.llm import services

    provider = services.provider_create(
        name="fake", kind="openai_compatible", base_url=fake_llm, api_key=PROVIDER_KEY, timeout_seconds=5.0, max_retries=0
    )
    services.deployment_create(
        logical_model=services.logical_model_create(name="tooled"), provider=provider, upstream_model="tools"
    )
    headers = bearer(make_token(scopes=["agents", "llm", "tools"]))
    return {"headers": headers}


def _agent(client: httpx.Client, headers: dict[str, str], agent_id: str, secrets: dict[str, str]) -> None:
    agent = make_agent(agent_id, name=agent_id.split(":")[1].title(), model="tooled", memory_recall_limit=0)
    for name, value in secrets.items():
        agent_secret_set(agent=agent, name=name, value=value)
    wait_until(
        lambda: any(
            m["name"] == "tooled" and m["deployments"]
            for m in client.get("/internal/llm/models", headers=headers).json()["models"]
        ),
        "model tooled in the server's registry",
    )
    response = client.post(f"/internal/agents/{agent_id}/load", headers=headers)
    # 409: the server's first request loaded every enabled agent already.
    assert response.status_code in (200, 409), response.text


def _chat(client: httpx.Client, headers: dict[str, str], agent_id: str) -> dict[str, Any]:
    response = client.post(
        f"/internal/agents/{agent_id}/chat",
        headers=headers,
        json={"microdao_id": "microdao:7", "channel_id": "channel:x", "message": "look it up"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _vendor_tool(target: str) -> None:
    from apps.tools.services import tool_create

    tool_create(
        tool_id="vendor.lookup",
        name="Vendor lookup",
        executor="http",
        target=f"{target}/lookup",
        input_schema={"type": "object"},
        allowed_agents=["agent:sofia", "agent:nokey"],
        secret_headers={"X-Tool-Own": "tool-own-secret"},
        agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"},
    )


def test_an_agents_provider_key_replaces_the_providers_for_its_calls_only(client, setup, fake_stats, header_target):
    headers = setup["headers"]
    _agent(client, headers, "agent:sofia", {"FAKE_API_KEY": AGENT_KEY, "VENDOR_TOKEN": VENDOR_TOKEN})
    _agent(client, headers, "agent:nokey", {})
    _vendor_tool(header_target)  # after the agents: a tool may allow only real agents
    wait_until(
        lambda: any(t["id"] == "vendor.lookup" for t in client.get("/internal/tools", headers=headers).json()["tools"]),
        "the tool in the server's registry",
    )

    _chat(client, headers, "agent:sofia")
    sofia_calls = fake_stats()["auth"]
    assert len(sofia_calls) == 2  # the tool call step, then the answer
    assert {c["authorization"] for c in sofia_calls} == {f"Bearer {AGENT_KEY}"}

    _chat(client, headers, "agent:nokey")
    after = fake_stats()["auth"][len(sofia_calls) :]
    assert len(after) == 2
    # The other agent's turn goes out with the provider's key: nothing was cached across agents.
    assert {c["authorization"] for c in after} == {f"Bearer {PROVIDER_KEY}"}


def test_a_declared_agent_secret_reaches_the_http_tool_and_a_missing_one_fails_cleanly(client, setup, fake_stats, header_target):
    headers = setup["headers"]
    _agent(client, headers, "agent:sofia", {"VENDOR_TOKEN": VENDOR_TOKEN, "UNRELATED": "not-for-tools-0004"})
    _agent(client, headers, "agent:nokey", {})
    _vendor_tool(header_target)
    wait_until(
        lambda: any(
            t["id"] == "vendor.lookup" and t["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}
            for t in client.get("/internal/tools", headers=headers).json()["tools"]
        ),
        "the tool in the server's registry",
    )
    _Recorder.received.clear()

    body = _chat(client, headers, "agent:sofia")
    [call] = body["tool_calls"]
    assert call["ok"] is True and call["result"] == {"vendor": "answered"}, call
    [seen] = _Recorder.received
    assert seen["headers"]["x-vendor-token"] == VENDOR_TOKEN
    assert seen["headers"]["x-tool-own"] == "tool-own-secret"  # the tool's own secret still goes
    assert "not-for-tools-0004" not in json.dumps(seen)  # only declared secrets leave
    assert VENDOR_TOKEN not in seen["body"]  # headers only, never the body's context

    body = _chat(client, headers, "agent:nokey")
    [call] = body["tool_calls"]
    assert call["ok"] is False and call["error_type"] == "missing_secret"
    assert "VENDOR_TOKEN" in call["error"]
    assert len(_Recorder.received) == 1  # the target was never called

    rows = wait_until_rows()
    assert sorted(r.error_type or "" for r in rows) == ["", "missing_secret"]
    dumped = json.dumps([[r.args, r.error] for r in rows], default=str)
    assert VENDOR_TOKEN not in dumped and "tool-own-secret" not in dumped


def wait_until_rows() -> list[ToolCall]:
    found: list[ToolCall] = []

    def check() -> bool:
        audit_flush()
        found[:] = list(ToolCall.objects.filter(tool_id="vendor.lookup"))
        return len(found) >= 2

    wait_until(check, "two audit rows of vendor.lookup")
    return found


def test_an_agents_own_key_echoed_by_the_upstream_reaches_no_caller_and_no_run_row(client, setup, secrets_server):
    # Issue #18 item 3: an upstream repeating Authorization handed an agent's own key to any
    # `agents` caller. The fake upstream's `leak` model answers 401 repeating the request's key.
    from apps.agents.models import Run
    from apps.llm import services
    from apps.llm.models import Provider

    headers = setup["headers"]
    services.deployment_create(
        logical_model=services.logical_model_create(name="leaky"),
        provider=Provider.objects.get(name="fake"),
        upstream_model="leak:401",
    )
    agent = make_agent("agent:leaky", name="Leaky", model="leaky", memory_recall_limit=0)
    agent_secret_set(agent=agent, name="FAKE_API_KEY", value=AGENT_KEY)
    wait_until(
        lambda: any(
            m["name"] == "leaky" and m["deployments"]
            for m in client.get("/internal/llm/models", headers=headers).json()["models"]
        ),
        "model leaky in the server's registry",
    )
    assert client.post("/internal/agents/agent:leaky/load", headers=headers).status_code in (200, 409)
    answer = client.post(
        "/internal/agents/agent:leaky/chat",
        headers=headers,
        json={"microdao_id": "microdao:7", "channel_id": "channel:x", "message": "hi"},
    )
    streamed = client.post(
        "/internal/agents/agent:leaky/chat",
        headers={**headers, "Accept": "text/event-stream"},
        json={"microdao_id": "microdao:7", "channel_id": "channel:x", "message": "hi again", "stream": True},
    )
    assert "[redacted]" in answer.text + streamed.text  # the upstream's message is there, cut
    for text in (answer.text, streamed.text):
        assert AGENT_KEY not in text and PROVIDER_KEY not in text
    rows = json.dumps([[r.error, r.status] for r in Run.objects.filter(agent_id="agent:leaky")], default=str)
    assert "leak" in rows or "upstream" in rows, rows
    assert AGENT_KEY not in rows and PROVIDER_KEY not in rows
    assert AGENT_KEY not in secrets_server.log_path.read_text(errors="replace")
    # Issue #18 item 5 on this door: a turn is charged to the agent's own microDAO only.
    other = client.post(
        "/internal/agents/agent:leaky/chat", headers=headers, json={"microdao_id": "microdao:victim", "message": "charge them"}
    )
    assert other.status_code == 403 and other.json()["error"]["type"] == "microdao_mismatch"
