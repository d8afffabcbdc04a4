"""The seed's acceptance test on a server of its own: Sofia-Prime, seeded by the demo, asked
about projects, calls `projects.list` over HTTP through toolcore (served by the project
itself), answers from its result and remembers - all offline, on the stub model. The same
server streams heartbeats every 50 ms, to show them on a slow turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from apps.agents.tests.sse import assert_protocol, parse_sse
from devtools.testing import (
    ServerProcess,
    free_port,
    start_asgi_server,
    start_celery_worker,
)


@pytest.fixture(scope="module")
def demo_server(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        **server_env,
        # The demo tool's target is this server; toolcore allows exactly its host.
        "DAARION_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DAARION_AGENTS_HEARTBEAT_SECONDS": "0.05",
        # Its runs go to a worker with this environment (the demo tool's host allowed).
        "DAARION_AGENTS_RUN_QUEUE": "agents-demo",
    }
    logs = tmp_path_factory.mktemp("demo-server")
    worker = start_celery_worker(env, logs, queues="agents-demo", pool="threads", concurrency=8, name="agents-demo")
    server = start_asgi_server(env, logs, port=port, name="demo")
    yield server
    server.stop()
    worker.stop()


def _wait(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _load(client: httpx.Client, headers: dict) -> None:
    # Loaded at this server's start-up if it began after the seed; load it otherwise.
    response = client.post("/internal/agents/agent:sofia/load", headers=headers)
    assert response.status_code in (200, 409), response.text
    assert client.get("/internal/agents/agent:sofia", headers=headers).json()["loaded"] is True


def test_sofia_answers_about_projects_through_the_whole_chain(demo_server, transactional_db, make_token, bearer):
    from apps.demo import agents as demo
    from apps.memory.models import MemoryEntry
    from apps.demo import registry as registry_demo
    from apps.demo import tools as tools_demo
    from apps.tools.models import Tool
    from apps.tools.services import tool_update

    registry_demo.seed()
    demo.seed()  # the agents before the tools that allow them, as seed_demo runs them
    tools_demo.seed()
    tool_update(tool=Tool.objects.get(tool_id="projects.list"), target=f"{demo_server.url}/demo/projects.list")
    headers = bearer(make_token(scopes=["agents", "tools"]))
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        _wait(
            lambda: (
                client.get("/internal/tools/projects.list", headers=headers).json().get("target", "").startswith(demo_server.url)
            ),
            "the demo tool's target",
        )
        _load(client, headers)
        response = client.post(
            "/internal/agents/agent:sofia/chat", headers=headers, json={"message": "Which projects do we have?"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    [call] = body["tool_calls"]
    assert (call["tool_id"], call["ok"], call["arguments"]) == ("projects.list", True, {"microdao_id": "microdao:7"})
    assert {p["name"] for p in call["result"]} >= {"DAARION Messenger", "Agent runtime v3"}
    assert body["reply"].startswith("[stub] Based on the tool result:") and "DAARION Messenger" in body["reply"]
    stored = MemoryEntry.objects.get(id=body["stored_memory_id"])
    assert stored.kind == "conversation" and "DAARION Messenger" in stored.content["agent_reply"]


def test_a_slow_turn_streams_heartbeats(demo_server, make_token, bearer, llm_routes, tools, scripted):
    from apps.agents.models import Agent
    from apps.agents.services import agent_update

    model = llm_routes("slow-model")
    scripted.script(model, [{"delay": 0.5, "text": "Finally."}])
    agent_update(agent=Agent.objects.get(pk="agent:sofia"), model=model)  # `tools` made Sofia
    headers = bearer(make_token(scopes=["agents", "llm"]))
    with httpx.Client(base_url=demo_server.url, timeout=60) as client:
        _wait(
            lambda: any(m["name"] == model for m in client.get("/internal/llm/models", headers=headers).json()["models"]),
            "the slow model",
        )
        _load(client, headers)
        response = client.post(
            "/internal/agents/agent:sofia/chat", headers=headers, json={"message": "take your time", "stream": True}
        )
    chunks, heartbeats, done = parse_sse(response.text)
    assert done and heartbeats >= 1
    assert_protocol(chunks)
    assert "".join(c.get("delta", "") for c in chunks).strip() == "Finally."
