"""Fixtures of the agent tests: a scripted upstream model, LLM routes to it (and to the
offline stub), toolcore tools with different permissions, a loaded Sofia and tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.agents.models import Agent
from apps.agents.services import agent_update
from apps.agents.tests.factories import make_agent
from apps.agents.tests.scripted_llm import ScriptedLLM

FOLLOWUP_SCHEMA = {
    "type": "object",
    "properties": {
        "microdao_id": {"type": "string"},
        "title": {"type": "string", "minLength": 1},
        "due_date": {"type": "string"},
    },
    "required": ["microdao_id", "title"],
    "additionalProperties": False,
}


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    yield server
    server.stop()


@pytest.fixture
def llm_routes(transactional_db, scripted) -> Callable[[str], str]:
    """route(name) makes logical model `name` answer from the scripted upstream (upstream
    model = name, so each test's script is its own); `dagi-stub` is the offline stub."""
    from apps.llm import services

    provider = services.provider_create(
        name="scripted",
        kind="openai_compatible",
        base_url=scripted.url,
        api_key="sk-scripted-000000",
        timeout_seconds=10.0,
        max_retries=0,
    )
    stub = services.provider_create(name="stub", kind="stub")
    services.deployment_create(
        logical_model=services.logical_model_create(name="dagi-stub"), provider=stub, upstream_model="dagi-stub"
    )

    def route(name: str) -> str:
        model = services.logical_model_create(name=name)
        services.deployment_create(logical_model=model, provider=provider, upstream_model=name)
        return name

    return route


@pytest.fixture
def tools(transactional_db, make_agents) -> dict[str, Any]:
    """followups.create (allowed to Sofia), vault.read (someone else's), broken.fetch (fails).

    A tool may allow only real agents, so Sofia and agent:cfo exist first (`sofia(...)`
    then gives Sofia the model and fields of the test)."""
    from apps.tools.services import tool_create

    make_agent()
    make_agents("agent:cfo")
    common = {"input_schema": FOLLOWUP_SCHEMA, "executor": "python", "target": "followups.create", "timeout": 5.0}
    return {
        "followups.create": tool_create(
            tool_id="followups.create", name="Create a follow-up", allowed_agents=["agent:sofia"], **common
        ),
        "vault.read": tool_create(tool_id="vault.read", name="Read the vault", allowed_agents=["agent:cfo"], **common),
        "broken.fetch": tool_create(
            tool_id="broken.fetch",
            name="Fetch from a host toolcore refuses",
            executor="http",
            target="http://tools.invalid/fetch",
            input_schema={"type": "object"},
            allowed_agents=["agent:sofia"],
            timeout=2.0,
        ),
    }


@pytest.fixture
def agents_headers(api, make_token, bearer) -> dict[str, str]:
    # The first request of a server process loads every enabled agent (its start-up); have
    # it happen now, so the agents a test creates start unloaded, whatever ran before.
    headers = bearer(make_token(scopes=["agents"]))
    assert api.get("/internal/agents", headers=headers).status_code == 200
    return headers


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def sofia(api, agents_headers, llm_routes, tools, make_token, bearer, agents_worker) -> Callable[..., str]:
    """sofia(model, **agent fields) sets up and loads agent:sofia on `model`, once the
    server's registry snapshots (models, tools) show what this test created."""
    headers = bearer(make_token(scopes=["llm", "tools"]))

    def _visible_model(model: str) -> bool:
        models = api.get("/internal/llm/models", headers=headers).json()["models"]
        return any(m["name"] == model and m["deployments"] for m in models)

    def _serves(wanted: dict[str, Any]) -> bool:
        response = api.get("/internal/agents/agent:sofia", headers=agents_headers)
        if response.status_code != 200:
            return False
        served = response.json()
        return all(served[k] == v for k, v in wanted.items() if k in served)

    def _visible_tools() -> bool:
        listed = api.get("/internal/tools", headers=headers).json()["tools"]
        return {t["id"] for t in listed} >= set(tools)

    def _make(model: str, *, load: bool = True, **fields: Any) -> str:
        agent_update(agent=Agent.objects.get(pk="agent:sofia"), model=model, **fields)
        # A blueprint of the same id from an earlier test may still be in the server's
        # snapshot for up to a check interval: wait until it serves this test's agent.
        wanted = {"model": model, **fields}
        wait_until(lambda: _serves(wanted), "this test's agent:sofia in the server's snapshot")
        wait_until(lambda: _visible_model(model), f"model {model} in the server's registry")
        wait_until(_visible_tools, "the test's tools in the server's registry")
        if load:
            # Loaded unless unloaded by hand (a new agent is): make sure of it either way.
            response = api.post("/internal/agents/agent:sofia/load", headers=agents_headers)
            assert response.status_code == 200 or response.json()["error"]["type"] == "agent_already_loaded", response.text
        return "agent:sofia"

    return _make
