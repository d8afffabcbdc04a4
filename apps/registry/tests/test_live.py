"""A change made through the management API is live in the LLM proxy and in toolcore
within a second, in a server process that cached the registries before the change."""

from __future__ import annotations

from apps.registry.tests.conftest import wait_for

FOLLOWUP_SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def test_disabling_a_tool_is_live_in_toolcore(api, token_client, make_token, bearer, make_agents):
    tools = bearer(make_token(scopes=["tools"]))
    make_agents("agent:sofia")
    created = token_client.post(
        "/tools/",
        json={
            "id": "followups.create",
            "name": "Create a follow-up",
            "input_schema": FOLLOWUP_SCHEMA,
            "executor": "python",
            "target": "followups.create",
            "allowed_agents": ["agent:sofia"],
        },
    )
    assert created.status_code == 201, created.text

    def call():
        return api.post(
            "/internal/tools/call",
            headers=tools,
            json={
                "tool_id": "followups.create",
                "agent_id": "agent:sofia",
                "microdao_id": "microdao:7",
                "args": {"title": "Send the roadmap"},
            },
        )

    first = call()
    assert first.status_code == 200 and first.json()["ok"] is True, first.text
    assert token_client.patch("/tools/followups.create/", json={"enabled": False}).status_code == 200
    refused = wait_for(lambda: (r := call()).status_code == 404 and r, timeout=1.0, message="the tool to be disabled")
    assert refused.json()["error"]["type"] == "tool_disabled"
    # And allowing another agent is live too.
    assert token_client.patch("/tools/followups.create/", json={"enabled": True, "allowed_agents": []}).status_code == 200
    wait_for(lambda: call().status_code == 403, timeout=1.0, message="the agent to be refused")


def test_a_model_added_through_the_api_answers_in_the_proxy(api, token_client, make_token, bearer):
    llm = bearer(make_token(scopes=["llm"]))
    body = {
        "model": "ci-model",
        "messages": [{"role": "user", "content": "hello registry"}],
        "metadata": {"agent_id": "agent:sofia", "microdao_id": "microdao:7"},
    }
    assert api.post("/internal/llm/proxy", headers=llm, json=body).status_code == 404  # cached: no such model
    assert token_client.post("/providers/", json={"name": "offline", "kind": "stub"}).status_code == 201
    created = token_client.post(
        "/models/", json={"name": "ci-model", "deployments": [{"provider": "offline", "upstream_model": "ci-upstream"}]}
    )
    assert created.status_code == 201, created.text
    answer = wait_for(
        lambda: (r := api.post("/internal/llm/proxy", headers=llm, json=body)).status_code == 200 and r,
        timeout=1.0,
        message="the new model to answer",
    )
    assert answer.json()["content"] == "[stub] You said: hello registry"
    assert (answer.json()["provider"], answer.json()["model_resolved"]) == ("offline", "ci-model")
    assert token_client.patch("/models/ci-model/", json={"enabled": False}).status_code == 200
    wait_for(
        lambda: api.post("/internal/llm/proxy", headers=llm, json=body).status_code == 404,
        timeout=1.0,
        message="the disabled model to be refused",
    )


def test_apply_is_live_too(api, token_client, make_token, bearer):
    llm = bearer(make_token(scopes=["llm"]))
    document = {"providers": {"offline": {"kind": "stub"}}, "models": {"gitops-model": {"provider": "offline", "name": "g"}}}
    assert token_client.post("/apply", json=document).status_code == 200
    body = {"model": "gitops-model", "messages": [{"role": "user", "content": "from git"}]}
    answer = wait_for(
        lambda: (r := api.post("/internal/llm/proxy", headers=llm, json=body)).status_code == 200 and r,
        timeout=1.0,
        message="the applied model to answer",
    )
    assert answer.json()["content"] == "[stub] You said: from git"
