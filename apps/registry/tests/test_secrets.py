"""Secrets are write-only: accepted on write, shown as set / not set with a date, and no
response of any endpoint ever contains a value."""

from __future__ import annotations

from apps.agents.models import AgentSecret
from apps.llm.models import Provider
from apps.registry.tests.conftest import OBJECT_SCHEMA
from apps.tools.models import Tool

SECRETS = ("sk-PROVIDER-SECRET-1", "TOOL-SECRET-2", "AGENT-SECRET-3", "ROTATED-SECRET-4", "TOOL-SECRET-5")


def _writes(client) -> list:
    responses = [
        client.post("/providers/", json={"name": "openai", "kind": "openai", "api_key": SECRETS[0]}),
        client.post(
            "/tools/",
            json={
                "id": "echo.any",
                "name": "Echo",
                "input_schema": OBJECT_SCHEMA,
                "executor": "http",
                "target": "http://svc:8000/echo",
                "secret_headers": {"X-Key": SECRETS[1]},
            },
        ),
        client.post(
            "/agents/",
            json={
                "id": "agent:sofia",
                "name": "Sofia",
                "microdao_id": "microdao:7",
                "model": "m",
                "secrets": {"OPENAI_API_KEY": SECRETS[2]},
            },
        ),
    ]
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    return responses


def test_secrets_are_stored_but_never_returned(token_client, session_client):
    responses = _writes(token_client)
    provider, tool, agent = (r.json() for r in responses)
    assert provider["api_key"]["set"] is True and provider["api_key"]["source"] == "stored" and provider["api_key"]["updated_at"]
    assert set(tool["secret_headers"]) == {"X-Key"} and tool["secret_headers"]["X-Key"]["set"] is True
    assert agent["secrets"]["OPENAI_API_KEY"]["set"] is True and agent["secrets"]["OPENAI_API_KEY"]["updated_at"]
    # Stored (sealed) for real.
    assert Provider.objects.get(name="openai").api_key == SECRETS[0]
    assert AgentSecret.objects.get(name="OPENAI_API_KEY").value == SECRETS[2]
    assert SECRETS[1] in Tool.objects.get(tool_id="echo.any").secret_headers

    # Rotate and add; each answer is checked too.
    responses += [
        token_client.patch("/providers/openai/", json={"api_key": SECRETS[3]}),
        token_client.patch("/tools/echo.any/", json={"secret_headers": {"X-Other": SECRETS[4]}}),
        token_client.patch("/agents/agent:sofia/", json={"secrets": {"SECOND": SECRETS[3]}}),
        token_client.put("/providers/openai/", json={"name": "openai", "kind": "openai"}),
    ]
    assert Provider.objects.get(name="openai").api_key == SECRETS[3]  # PUT without a key keeps it
    assert set(responses[-3].json()["secret_headers"]) == {"X-Key", "X-Other"}

    for client in (token_client, session_client):
        for path in (
            "/",
            "/providers/",
            "/providers/openai/",
            "/tools/",
            "/tools/echo.any/",
            "/agents/",
            "/agents/agent:sofia/",
            "/models/",
            "/rate-limits/",
            "/embedding-models/",
            "/schema/",
        ):
            responses.append(client.get(path))
            assert responses[-1].status_code == 200, (path, responses[-1].text)
        responses.append(client.get("/providers/openai/", headers={"Accept": "text/html"}))
        responses.append(client.get("/agents/agent:sofia/", headers={"Accept": "text/html"}))
    for response in responses:
        for secret in SECRETS:
            assert secret not in response.text, (response.request.url, secret)


def test_secrets_can_be_cleared(token_client):
    _writes(token_client)
    cleared = token_client.patch("/providers/openai/", json={"api_key": ""}).json()
    assert cleared["api_key"] == {"set": False, "updated_at": None, "source": "none"}
    env = token_client.patch("/providers/openai/", json={"api_key_env": "OPENAI_API_KEY"}).json()
    assert env["api_key"]["source"] == "env"
    assert token_client.patch("/tools/echo.any/", json={"secret_headers": {"X-Key": None}}).json()["secret_headers"] == {}
    assert token_client.patch("/agents/agent:sofia/", json={"secrets": {"OPENAI_API_KEY": None}}).json()["secrets"] == {}
    assert not AgentSecret.objects.exists() and Tool.objects.get(tool_id="echo.any").secret_headers == ""


def test_one_agent_secret_rotated_and_removed_on_its_own(token_client, read_client):
    _writes(token_client)
    rotated = token_client.put("/agents/agent:sofia/secrets/OPENAI_API_KEY/", json={"value": SECRETS[3]})
    assert rotated.status_code == 200 and rotated.json()["secrets"]["OPENAI_API_KEY"]["set"] is True
    added = token_client.put("/agents/agent:sofia/secrets/GITHUB_TOKEN/", json={"value": SECRETS[4]})
    assert set(added.json()["secrets"]) == {"OPENAI_API_KEY", "GITHUB_TOKEN"}
    assert AgentSecret.objects.get(name="OPENAI_API_KEY").value == SECRETS[3]
    for response in (rotated, added):
        assert not any(secret in response.text for secret in SECRETS)
    assert token_client.put("/agents/agent:sofia/secrets/GITHUB_TOKEN/", json={}).status_code == 422
    assert token_client.put("/agents/agent:sofia/secrets/bad name!/", json={"value": "x"}).status_code == 422
    assert read_client.put("/agents/agent:sofia/secrets/GITHUB_TOKEN/", json={"value": "x"}).status_code == 403
    assert token_client.put("/agents/agent:nobody/secrets/X/", json={"value": "x"}).status_code == 404
    removed = token_client.delete("/agents/agent:sofia/secrets/GITHUB_TOKEN/")
    assert removed.status_code == 200 and set(removed.json()["secrets"]) == {"OPENAI_API_KEY"}
    again = token_client.delete("/agents/agent:sofia/secrets/GITHUB_TOKEN/")
    assert again.status_code == 404 and again.json()["error"]["type"] == "secret_not_found"


def test_the_change_log_shows_who_changed_a_secret_but_not_the_value(token_client, read_client):
    _writes(token_client)
    token_client.patch("/providers/openai/", json={"api_key": SECRETS[3]})
    provider_id = Provider.objects.get(name="openai").pk
    log = read_client.get(f"/changes/?object_type=llm.Provider&object_id={provider_id}&ordering=created_at")
    assert log.status_code == 200
    records = log.json()["results"]
    assert [(r["action"], r["actor"], r["source"]) for r in records] == [
        ("create", "token:ci-deployer", "api"),
        ("update", "token:ci-deployer", "api"),
    ]
    assert records[1]["changes"] == {"api_key": ["(changed)", "(changed)"]}
    everything = read_client.get("/changes/?page_size=500")
    assert everything.json()["count"] >= 4
    assert not any(secret in everything.text for secret in SECRETS)
    assert token_client.delete(f"/changes/{records[0]['id']}/").status_code == 405
