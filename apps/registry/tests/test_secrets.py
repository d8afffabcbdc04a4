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
        client.post("/tools/", json={"id": "echo.any", "name": "Echo", "input_schema": OBJECT_SCHEMA, "executor": "http",
                                     "target": "http://svc:8000/echo", "secret_headers": {"X-Key": SECRETS[1]}}),
        client.post("/agents/", json={"id": "agent:sofia", "name": "Sofia", "microdao_id": "microdao:7", "model": "m",
                                      "secrets": {"OPENAI_API_KEY": SECRETS[2]}}),
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
        for path in ("/", "/providers/", "/providers/openai/", "/tools/", "/tools/echo.any/", "/agents/",
                     "/agents/agent:sofia/", "/models/", "/rate-limits/", "/embedding-models/", "/schema/"):
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
