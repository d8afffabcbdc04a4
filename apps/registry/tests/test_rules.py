"""Every registry rule is refused through the API as through the import and the services:
422 with field paths (400 for a body that is not JSON), 409 for conflicts, nothing stored."""

from __future__ import annotations

import pytest

from apps.llm.models import LogicalModel, Provider
from apps.registry.tests.conftest import OBJECT_SCHEMA
from apps.tools.models import Tool

TOOL = {"id": "t.ok", "name": "T", "input_schema": OBJECT_SCHEMA, "executor": "http", "target": "http://svc:8000/t"}
AGENT = {"id": "agent:ok", "name": "Ok", "microdao_id": "microdao:7", "model": "gpt-x"}


def _refused(response, status: int, type_: str, path: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_, error
    if path is not None:
        assert path in [d["path"] for d in error["details"]], error
    return error


@pytest.mark.parametrize(
    "collection, body, path",
    [
        ("providers", {"name": "p", "kind": "openai_compatible"}, "base_url"),
        ("providers", {"name": "p", "kind": "openai", "base_url": "ftp://x"}, "base_url"),
        ("providers", {"name": "p", "kind": "nope"}, "kind"),
        ("providers", {"name": "bad name!", "kind": "stub"}, "name"),
        ("providers", {"name": "p", "kind": "stub", "api_key_env": "1-not-env"}, "api_key_env"),
        ("providers", {"name": "p", "kind": "stub", "timeout_seconds": "soon"}, "timeout_seconds"),
        ("providers", {"kind": "stub"}, "name"),
        ("models", {"name": "m", "fallbacks": ["m"]}, "fallbacks"),
        ("models", {"name": "m", "fallbacks": ["ghost"]}, "fallbacks"),
        ("models", {"name": "m", "input_price_per_mtok": -1}, "input_price_per_mtok"),
        ("models", {"name": "m", "deployments": [{"provider": "ghost", "upstream_model": "u"}]}, "deployments[0].provider"),
        ("models", {"name": "m", "deployments": [{"provider": "stub"}]}, "deployments[0].upstream_model"),
        ("models", {"name": "m", "deployments": [{"provider": "stub", "upstream_model": "u"}] * 2}, "deployments[1]"),
        ("rate-limits", {"scope": "default", "subject": "agent:x", "rpm": 1}, "subject"),
        ("rate-limits", {"scope": "agent", "rpm": 1}, "subject"),
        ("rate-limits", {"scope": "agent", "subject": "agent:x", "rpm": 0}, "rpm"),
        ("tools", {**TOOL, "input_schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}, "input_schema"),
        ("tools", {**TOOL, "input_schema": {"type": "array"}}, "input_schema"),
        ("tools", {**TOOL, "output_schema": {"type": 5}}, "output_schema"),
        ("tools", {**TOOL, "target": "not a url"}, "target"),
        ("tools", {**TOOL, "executor": "python", "target": "no.such.function"}, "target"),
        ("tools", {**TOOL, "id": "bad id with spaces"}, "id"),
        ("tools", {**TOOL, "allowed_agents": "agent:sofia"}, "allowed_agents"),
        ("tools", {**TOOL, "allowed_agents": ["agent:ghost"]}, "allowed_agents"),
        ("tools", {**TOOL, "timeout": 1000}, "timeout"),
        ("tools", {**TOOL, "secret_headers": {"Content-Type": "x"}}, "secret_headers"),
        ("agents", {**AGENT, "id": "sofia"}, "id"),
        ("agents", {**AGENT, "character": {"bio": 5}}, "character.bio"),
        ("agents", {**AGENT, "max_tool_steps": 99}, "max_tool_steps"),
        ("agents", {**AGENT, "temperature": 3}, "temperature"),
        ("agents", {**AGENT, "memory_kinds": ["Not A Kind"]}, "memory_kinds"),
        ("agents", {**AGENT, "secrets": {"bad name!": "v"}}, "secrets.bad name!.name"),
        ("agents", {**AGENT, "secrets": {"KEY": ""}}, "secrets.KEY"),
        ("embedding-models", {"name": "llm-x", "backend": "llm", "dimensions": 8}, "name"),
        ("embedding-models", {"name": "big", "backend": "hash", "dimensions": 5000}, "dimensions"),
    ],
)
def test_rule_refused_with_path_and_nothing_stored(token_client, stub_provider, collection, body, path):
    before = token_client.get(f"/{collection}/").json()["count"]
    _refused(token_client.post(f"/{collection}/", json=body), 422, "validation_error", path)
    assert token_client.get(f"/{collection}/").json()["count"] == before


def test_unique_ids_and_conflicts(token_client, stub_provider):
    assert token_client.post("/tools/", json=TOOL).status_code == 201
    _refused(token_client.post("/tools/", json=TOOL), 422, "validation_error", "id")
    _refused(token_client.post("/providers/", json={"name": "stub", "kind": "stub"}), 422, "validation_error", "name")
    assert token_client.post("/agents/", json=AGENT).status_code == 201
    _refused(token_client.post("/agents/", json=AGENT), 409, "agent_exists")
    embedding = {"name": "hash-x", "backend": "hash", "dimensions": 64, "is_active": True}
    assert token_client.post("/embedding-models/", json=embedding).json()["is_active"] is True
    _refused(token_client.post("/embedding-models/", json=embedding), 409, "conflict")
    # Deleting what others still use.
    assert (
        token_client.post(
            "/models/", json={"name": "a", "deployments": [{"provider": "stub", "upstream_model": "a"}]}
        ).status_code
        == 201
    )
    assert token_client.post("/models/", json={"name": "b", "fallbacks": ["a"]}).status_code == 201
    _refused(token_client.delete("/providers/stub/"), 409, "conflict")
    _refused(token_client.delete("/models/a/"), 409, "conflict")
    # A loop made by an update is refused too.
    _refused(token_client.patch("/models/a/", json={"fallbacks": ["b"]}), 422, "validation_error", "fallbacks")
    assert LogicalModel.objects.get(name="a").fallbacks == []
    # Names are fixed; scope and subject of a policy too.
    _refused(token_client.patch("/tools/t.ok/", json={"id": "t.other"}), 422, "validation_error", "id")
    policy = token_client.post("/rate-limits/", json={"scope": "agent", "subject": "agent:ok", "rpm": 1}).json()
    _refused(token_client.patch(f"/rate-limits/{policy['id']}/", json={"subject": "agent:y"}), 422, "validation_error")
    _refused(token_client.patch("/embedding-models/hash-x/", json={"is_active": False}), 422, "validation_error", "is_active")
    _refused(token_client.delete("/embedding-models/hash-x/"), 409, "conflict")


def test_bodies_that_are_not_json_objects(token_client):
    response = token_client.post("/providers/", content=b"{not json", headers={"Content-Type": "application/json"})
    _refused(response, 400, "bad_request")
    _refused(token_client.post("/providers/", json=["a", "list"]), 422, "validation_error")
    _refused(token_client.post("/providers/", content=b"x", headers={"Content-Type": "text/csv"}), 415, "unsupported_media_type")
    _refused(token_client.get("/providers/?enabled=maybe"), 422, "validation_error", "query.enabled")


def test_the_same_rule_refuses_the_import_and_the_api(token_client):
    """One validation path: the message the import gives is the message the API gives."""
    from apps.registry.documents import registry_apply
    from daarion.infra.errors import ValidationFailed

    bad = {**TOOL, "input_schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}
    api_error = _refused(token_client.post("/tools/", json=bad), 422, "validation_error", "input_schema")
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document={"tools": [bad]}, prune=False)
    api_message = next(d["message"] for d in api_error["details"] if d["path"] == "input_schema")
    assert {"path": "tools[0].input_schema", "message": api_message} in raised.value.details
    assert not Tool.objects.exists() and not Provider.objects.filter(name="p").exists()


def test_a_fallback_loop_is_refused_alike_by_the_api_and_the_import(token_client, stub_provider):
    from apps.registry.documents import registry_apply
    from daarion.infra.errors import ValidationFailed

    for name, fallbacks in (("a", []), ("b", ["a"])):
        body = {"name": name, "fallbacks": fallbacks, "deployments": [{"provider": "stub", "upstream_model": name}]}
        assert token_client.post("/models/", json=body).status_code == 201
    api_error = _refused(token_client.patch("/models/a/", json={"fallbacks": ["b"]}), 422, "validation_error", "fallbacks")
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document={"models": {"a": {"provider": "stub", "name": "a", "fallbacks": ["b"]}}}, prune=False)
    assert api_error["details"][0]["message"] == raised.value.details[0]["message"] == "fallbacks would loop: a → b → a"


UNKNOWN_PMM = (
    "no agent 'agent:pmm' in the registry (create the agent first, or list it under agents: in the same registry document)"
)


def test_allowed_agents_must_name_real_agents(client, make_agents):
    make_agents("agent:sofia", "agent:pm")
    unknown = {"path": "allowed_agents", "message": UNKNOWN_PMM}
    error = _refused(client.post("/tools/", json={**TOOL, "allowed_agents": ["agent:pm", "agent:pmm"]}), 422, "validation_error")
    assert error["details"] == [unknown] and error["message"] == f"allowed_agents: {UNKNOWN_PMM}"
    assert not Tool.objects.exists()

    assert client.post("/tools/", json={**TOOL, "allowed_agents": ["agent:sofia"]}).status_code == 201
    for method, body in (
        ("put", {**TOOL, "allowed_agents": ["agent:pmm"]}),
        ("patch", {"allowed_agents": ["agent:sofia", "agent:pmm"]}),
        ("patch", {"description": "also changed", "allowed_agents": ["agent:pmm"]}),
    ):
        error = _refused(client.request(method.upper(), "/tools/t.ok/", json=body), 422, "validation_error")
        assert error["details"] == [unknown], method
    stored = Tool.objects.get()
    assert (stored.allowed_agents, stored.description, stored.version) == (["agent:sofia"], "", 1)
    # Once the agent exists (created through this API), the same PATCH passes.
    assert client.post("/agents/", json={**AGENT, "id": "agent:pmm"}).status_code == 201
    patched = client.patch("/tools/t.ok/", json={"allowed_agents": ["agent:sofia", "agent:pmm"]})
    assert patched.status_code == 200 and patched.json()["allowed_agents"] == ["agent:pmm", "agent:sofia"]


def test_the_unknown_agent_message_is_the_imports(token_client):
    from apps.registry.documents import registry_apply
    from daarion.infra.errors import ValidationFailed

    api_error = _refused(token_client.post("/tools/", json={**TOOL, "allowed_agents": ["agent:pmm"]}), 422, "validation_error")
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document={"tools": [{**TOOL, "allowed_agents": ["agent:pmm"]}]}, prune=False)
    assert raised.value.details == [{"path": "tools[0].allowed_agents", "message": api_error["details"][0]["message"]}]


def test_deleting_an_agent_takes_it_out_of_the_tools(token_client, make_agents):
    make_agents("agent:sofia", "agent:pm")
    assert token_client.post("/tools/", json={**TOOL, "allowed_agents": ["agent:pm", "agent:sofia"]}).status_code == 201
    assert token_client.post("/tools/", json={**TOOL, "id": "t.pm", "allowed_agents": ["agent:pm"]}).status_code == 201
    assert token_client.delete("/agents/agent:pm/").status_code == 204
    assert token_client.get("/tools/t.ok/").json()["allowed_agents"] == ["agent:sofia"]
    narrowed = token_client.get("/tools/t.pm/").json()
    assert (narrowed["allowed_agents"], narrowed["version"]) == ([], 2)  # no agent, not every agent
    changes = token_client.get("/changes/?object_type=tools.Tool&action=update").json()["results"]
    assert sorted((c["object_repr"], c["actor"], c["source"]) for c in changes) == [
        ("t.ok", "token:ci-deployer", "api"),
        ("t.pm", "token:ci-deployer", "api"),
    ]
    # The narrowed tool still saves: nothing left in it names a missing agent.
    assert token_client.patch("/tools/t.pm/", json={"description": "kept"}).status_code == 200


def test_an_agent_policy_must_name_a_real_agent(token_client, make_agents):
    from apps.llm.models import RateLimitPolicy
    from apps.registry.documents import registry_apply
    from daarion.infra.errors import ValidationFailed

    ghost = UNKNOWN_PMM
    error = _refused(
        token_client.post("/rate-limits/", json={"scope": "agent", "subject": "agent:pmm", "rpm": 1}), 422, "validation_error"
    )
    assert error["details"] == [{"path": "subject", "message": ghost}] and error["message"] == f"subject: {ghost}"
    assert not RateLimitPolicy.objects.exists()
    # A registry document says the same at its path.
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document={"rate_limits": [{"scope": "agent", "subject": "agent:pmm", "rpm": 1}]}, prune=False)
    assert raised.value.details == [{"path": "rate_limits[0].subject", "message": ghost}]
    # microDAO policies name no agent; once the agent exists, the same body passes.
    assert token_client.post("/rate-limits/", json={"scope": "microdao", "subject": "microdao:any", "rpm": 1}).status_code == 201
    make_agents("agent:pmm")
    assert token_client.post("/rate-limits/", json={"scope": "agent", "subject": "agent:pmm", "rpm": 1}).status_code == 201


def test_deleting_an_agent_deletes_its_policies_and_narrows_its_tokens(token_client, make_agents, make_token):
    from apps.access.models import ServiceToken

    make_agents("agent:sofia", "agent:pm")
    for subject in ("agent:pm", "agent:sofia"):
        assert token_client.post("/rate-limits/", json={"scope": "agent", "subject": subject, "rpm": 5}).status_code == 201
    make_token(scopes=["llm"], agents=["agent:pm"], name="pm-runtime")
    assert token_client.delete("/agents/agent:pm/").status_code == 204
    listed = token_client.get("/rate-limits/?scope=agent").json()["results"]
    assert [p["subject"] for p in listed] == ["agent:sofia"]
    assert ServiceToken.objects.get(name="pm-runtime").agents == []
    changes = token_client.get("/changes/?action=delete").json()["results"]
    assert sorted((c["object_type"], c["object_repr"], c["actor"], c["source"]) for c in changes) == [
        ("agents.Agent", "Pm (agent:pm)", "token:ci-deployer", "api"),
        ("llm.RateLimitPolicy", "agent:agent:pm", "token:ci-deployer", "api"),
    ]
    token_change = token_client.get("/changes/?object_type=daarion.ServiceToken&action=update").json()["results"]
    assert [(c["actor"], c["changes"]) for c in token_change] == [("token:ci-deployer", {"agents": [["agent:pm"], []]})]
