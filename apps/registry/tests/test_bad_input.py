"""Bad input to the management API found by fuzzing: each answers its error in the envelope
(400/422), never a 500, and stores nothing."""

from __future__ import annotations

import pytest

from apps.agents.models import Agent
from apps.llm.models import LogicalModel, Provider

AGENT = {"id": "agent:fuzz", "name": "Fuzz", "microdao_id": "microdao:7", "model": "gpt-x"}


def _error(response, status: int, type_: str, in_message: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert in_message in error["message"], error
    return error


@pytest.fixture
def gpt_x(token_client, stub_provider):
    created = token_client.post(
        "/models/", json={"name": "gpt-x", "deployments": [{"provider": "stub", "upstream_model": "gpt-x-1"}]}
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("raw", ['{"a": "x\\u0000y"}', '{"k": "\\ud800"}', '{"a": [{"\\u0000": 1}]}'])
def test_an_agent_character_jsonb_cannot_store_is_422(token_client, gpt_x, raw):
    body = ('{"id": "agent:fuzz", "name": "Fuzz", "microdao_id": "microdao:7", "model": "gpt-x", "character": %s}' % raw).encode()
    response = token_client.post("/agents/", content=body, headers={"content-type": "application/json"})
    error = _error(response, 422, "validation_error")
    assert error["details"][0]["path"].startswith("character")
    assert not Agent.objects.filter(pk="agent:fuzz").exists()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/agents/", "application/json"), ("/apply", "application/json"), ("/apply", "application/yaml")],
)
def test_a_body_nested_too_deeply_is_400(token_client, path, content_type):
    body = b'{"agents": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    if content_type == "application/yaml":
        body = b"agents: " + b"[" * 50_000 + b"]" * 50_000
    response = token_client.post(path, content=body, headers={"content-type": content_type})
    _error(response, 400, "bad_request", "nested too deeply")


def test_a_provider_url_that_does_not_parse_is_422(token_client):
    response = token_client.post("/providers/", json={"name": "p1", "kind": "openai_compatible", "base_url": "http://[::1"})
    error = _error(response, 422, "validation_error", "base_url")
    assert error["details"][0]["path"] == "base_url"
    assert not Provider.objects.filter(name="p1").exists()


@pytest.mark.parametrize("deployment", [{"provider": "stub"}, {"upstream_model": "gpt-x-2"}])
def test_a_patched_deployment_missing_a_field_is_422(token_client, gpt_x, deployment):
    # DRF validates nested items of a PATCH partially, so the required fields reach the service.
    response = token_client.patch("/models/gpt-x/", json={"deployments": [deployment]})
    field = "upstream_model" if "provider" in deployment else "provider"
    error = _error(response, 422, "validation_error", field)
    assert error["details"][0]["path"] == f"deployments[0].{field}"
    model = LogicalModel.objects.get(name="gpt-x")
    assert [d.upstream_model for d in model.deployments.all()] == ["gpt-x-1"]


def test_an_agent_secret_name_with_nul_is_422_and_deleting_one_is_a_no_op(token_client, gpt_x):
    response = token_client.post("/agents/", json={**AGENT, "secrets": {"KEY\u0000": "v"}})
    error = _error(response, 422, "validation_error", "secret names")
    assert error["details"][0]["path"].startswith("secrets.")
    assert not Agent.objects.filter(pk="agent:fuzz").exists()
    assert token_client.post("/agents/", json={**AGENT, "secrets": {"KEY": "v"}}).status_code == 201
    patched = token_client.patch("/agents/agent:fuzz/", json={"secrets": {"KEY\u0000": None}})
    assert patched.status_code == 200, patched.text
    assert Agent.objects.get(pk="agent:fuzz").secrets.count() == 1


def test_a_provider_header_value_with_crlf_is_422(token_client):
    body = {
        "name": "p-crlf",
        "kind": "openai_compatible",
        "base_url": "http://llm.internal/v1",
        "extra_headers": {"X-Team": "a\r\nX-Injected: 1"},
    }
    error = _error(token_client.post("/providers/", json=body), 422, "validation_error", "extra_headers")
    assert "CR" in error["message"]
    assert not Provider.objects.filter(name="p-crlf").exists()


@pytest.mark.parametrize("scope", ["registry", "registry:read"])
def test_a_token_bound_to_agents_cannot_use_the_registry(api, make_token, bearer, token_client, gpt_x, scope):
    # It could edit, delete or read every other agent (found: a token bound to agent:sofia
    # PATCHed agent:other's system prompt and deleted it).
    assert token_client.post("/agents/", json=AGENT).status_code == 201
    bound = bearer(make_token(scopes=[scope], agents=["agent:sofia"]))
    for method, path, body in [
        ("GET", "/api/registry/agents/", None),
        ("GET", "/api/registry/agents/agent:fuzz/", None),
        ("PATCH", "/api/registry/agents/agent:fuzz/", {"system_prompt": "taken over"}),
        ("DELETE", "/api/registry/agents/agent:fuzz/", None),
        ("GET", "/api/registry/export", None),
    ]:
        response = api.request(method, path, json=body, headers=bound)
        _error(response, 403, "agent_bound_token")
    agent = Agent.objects.get(pk="agent:fuzz")
    assert agent.system_prompt == ""


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ('"input_schema": {"type": "object", "description": "a\\u0000b"}', "input_schema"),
        ('"input_schema": {"type": "object", "description": "\\ud800"}', "input_schema"),
        ('"input_schema": {"type": "object"}, "output_schema": {"title": "\\u0000"}', "output_schema"),
        ('"input_schema": {"type": "object"}, "target": "http://[::1"', "target"),
    ],
)
def test_a_tool_jsonb_or_urlsplit_cannot_take_is_422(token_client, fields, where):
    from apps.tools.models import Tool

    body = '{"id": "t.fuzz", "name": "Fuzz", "executor": "http", "target": "http://svc.internal/x", %s}' % fields
    # A later "target" key overrides the first one.
    response = token_client.post("/tools/", content=body.encode(), headers={"content-type": "application/json"})
    error = _error(response, 422, "validation_error", where)
    assert error["details"][0]["path"] == where
    assert not Tool.objects.filter(tool_id="t.fuzz").exists()
