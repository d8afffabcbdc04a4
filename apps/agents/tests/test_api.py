"""/internal/agents over real HTTP: listing, blueprints, load/unload, secrets, auth — and the
loaded state and edits seen by a second server process.
"""

from __future__ import annotations

import time

import pytest

from apps.agents.services import agent_secret_set, agent_update
from apps.agents.tests.factories import make_agent
from devtools.testing import start_asgi_server


@pytest.fixture
def headers(api, make_token, bearer):
    # The first request of a process loads every enabled agent (its "server start"); make
    # it happen before the test creates agents, so they start unloaded, deterministically.
    raw = make_token(scopes=["agents"])
    assert api.get("/internal/agents", headers=bearer(raw)).status_code == 200
    return bearer(raw)


def _poll(call, check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if check(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_list_shows_state_and_version(api, headers):
    make_agent()
    make_agent("agent:off", name="Off", enabled=False)
    response = _poll(
        lambda: api.get("/internal/agents", headers=headers),
        lambda r: {i["id"] for i in r.json()["items"]} == {"agent:sofia", "agent:off"},
    )
    items = {item["id"]: item for item in response.json()["items"]}
    # No state yet: an enabled agent can chat as soon as it exists, whichever door made it.
    assert items["agent:sofia"]["loaded"] is True
    assert items["agent:sofia"]["version"] == 1
    assert items["agent:off"]["enabled"] is False


def test_load_then_load_again_then_unload(api, headers):
    make_agent()
    # A new agent is loaded; an unload is an operator's state, and a load undoes it.
    new = api.post("/internal/agents/agent:sofia/load", headers=headers)
    assert new.status_code == 409 and new.json()["error"]["type"] == "agent_already_loaded"
    assert api.post("/internal/agents/agent:sofia/unload", headers=headers).status_code == 200
    first = api.post("/internal/agents/agent:sofia/load", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["loaded"] is True and first.json()["loaded_since"]
    again = api.post("/internal/agents/agent:sofia/load", headers=headers)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "agent_already_loaded"
    unloaded = api.post("/internal/agents/agent:sofia/unload", headers=headers)
    assert unloaded.status_code == 200 and unloaded.json()["loaded"] is False
    twice = api.post("/internal/agents/agent:sofia/unload", headers=headers)
    assert twice.status_code == 409 and twice.json()["error"]["type"] == "agent_not_loaded"


def test_unknown_agent_is_404(api, headers):
    for method, url in [
        ("post", "/internal/agents/agent:nobody/load"),
        ("post", "/internal/agents/agent:nobody/unload"),
        ("get", "/internal/agents/agent:nobody"),
    ]:
        response = getattr(api, method)(url, headers=headers)
        assert response.status_code == 404, url
        assert response.json()["error"]["type"] == "agent_not_found"


def test_disabled_agent_cannot_be_loaded(api, headers):
    make_agent(enabled=False)
    response = api.post("/internal/agents/agent:sofia/load", headers=headers)
    assert response.status_code == 409 and response.json()["error"]["type"] == "agent_disabled"


def test_blueprint_has_secret_names_but_no_values(api, headers):
    agent = make_agent()
    agent_secret_set(agent=agent, name="OPENAI_API_KEY", value="sk-very-secret-value")
    response = _poll(
        lambda: api.get("/internal/agents/agent:sofia", headers=headers),
        lambda r: r.json().get("secret_names") == ["OPENAI_API_KEY"],
    )
    body = response.json()
    assert body["secret_names"] == ["OPENAI_API_KEY"]
    assert body["character"]["topics"] == ["projects", "roadmaps"]
    assert body["memory"] == {"recall_limit": 5, "kinds": []}
    assert "sk-very-secret-value" not in response.text


def test_secrets_need_the_secrets_scope(api, make_token, bearer, headers):
    agent = make_agent()
    agent_secret_set(agent=agent, name="TOKEN", value="tok-123")
    refused = api.get("/internal/agents/agent:sofia/secrets", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "scope_not_allowed"
    allowed = bearer(make_token(scopes=["agents", "agents:secrets"]))
    response = _poll(
        lambda: api.get("/internal/agents/agent:sofia/secrets", headers=allowed),
        lambda r: r.json().get("secrets") == {"TOKEN": "tok-123"},
    )
    assert response.status_code == 200 and response.json()["secrets"] == {"TOKEN": "tok-123"}
    bound = bearer(make_token(scopes=["agents", "agents:secrets"], agents=["agent:other"]))
    response = api.get("/internal/agents/agent:sofia/secrets", headers=bound)
    assert response.status_code == 403 and response.json()["error"]["type"] == "agent_not_allowed"


def test_auth_is_required_and_scoped(api, make_token, bearer, headers):
    make_agent()
    assert api.get("/internal/agents").status_code == 401
    wrong_scope = api.get("/internal/agents", headers=bearer(make_token(scopes=["llm"])))
    assert wrong_scope.status_code == 403 and wrong_scope.json()["error"]["type"] == "scope_not_allowed"
    bound = bearer(make_token(scopes=["agents"], agents=["agent:other"]))
    response = api.post("/internal/agents/agent:sofia/load", headers=bound)
    assert response.status_code == 403 and response.json()["error"]["type"] == "agent_not_allowed"


def test_state_and_edits_are_shared_across_processes(api, headers, server_env, tmp_path):
    agent = make_agent()
    other = start_asgi_server(server_env, tmp_path, name="second")
    try:
        import httpx

        with httpx.Client(base_url=other.url, timeout=30) as second:
            assert api.post("/internal/agents/agent:sofia/unload", headers=headers).status_code == 200
            assert api.post("/internal/agents/agent:sofia/load", headers=headers).status_code == 200
            seen = second.get("/internal/agents/agent:sofia", headers=headers).json()
            assert seen["loaded"] is True and seen["version"] == 1
            # Loading in the other process now conflicts: one shared state.
            assert second.post("/internal/agents/agent:sofia/load", headers=headers).status_code == 409

            agent_update(agent=agent, system_prompt="Edited.")
            response = _poll(
                lambda: second.get("/internal/agents/agent:sofia", headers=headers),
                lambda r: r.json()["version"] == 2,
            )
            assert response.json()["system_prompt"] == "Edited." and response.json()["loaded"] is True
            assert second.post("/internal/agents/agent:sofia/unload", headers=headers).status_code == 200
            assert api.get("/internal/agents/agent:sofia", headers=headers).json()["loaded"] is False
    finally:
        other.stop()


def test_enabled_agents_are_loaded_in_a_server_started_before_them(transactional_db, make_token, bearer, server_env, tmp_path):
    server = start_asgi_server(server_env, tmp_path, name="fresh")
    try:
        import httpx

        headers = bearer(make_token(scopes=["agents"]))
        assert httpx.get(f"{server.url}/internal/agents", headers=headers).status_code == 200
        make_agent()
        make_agent("agent:off", name="Off", enabled=False)
        response = _poll(
            lambda: httpx.get(f"{server.url}/internal/agents", headers=headers), lambda r: len(r.json()["items"]) == 2
        )
        items = {item["id"]: item["loaded"] for item in response.json()["items"]}
        assert items == {"agent:sofia": True, "agent:off": False}
    finally:
        server.stop()


def test_a_bound_token_sees_and_reads_only_its_own_agents(api, make_token, bearer, headers):
    make_agent()
    make_agent("agent:other", name="Other")
    bound = bearer(make_token(scopes=["agents"], agents=["agent:other"]))
    listed = _poll(lambda: api.get("/internal/agents", headers=bound), lambda r: len(r.json()["items"]) == 1)
    assert [item["id"] for item in listed.json()["items"]] == ["agent:other"]
    assert api.get("/internal/agents/agent:other", headers=bound).status_code == 200
    for agent_id in ("agent:sofia", "agent:does-not-exist"):  # the same answer: existence does not leak
        refused = api.get(f"/internal/agents/{agent_id}", headers=bound)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "agent_not_allowed"
        assert "system_prompt" not in refused.text
    everyone = api.get("/internal/agents", headers=headers).json()["items"]
    assert {item["id"] for item in everyone} == {"agent:sofia", "agent:other"}


@pytest.mark.parametrize(
    "fields",
    [
        {"message": "hi\u0000there"},
        {"microdao_id": "microdao:\u0000"},
        {"channel_id": "c\u0000"},
        {"user_id": "u\u0000"},
        {"context": [{"role": "user", "author": "a\u0000", "content": "hi"}]},
    ],
)
def test_chat_text_postgres_cannot_store_is_422(api, headers, fields):
    # The turn stores these (memory, transcript, usage); a NUL made that fail silently after
    # the reply, or a 500.
    make_agent()
    body = {"message": "hi", "microdao_id": "microdao:7", **fields}
    response = api.post("/internal/agents/agent:sofia/chat", json=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error" and "NUL" in error["message"]
