"""Whole-registry documents: export, apply, dry-run plans, all-or-nothing, secrets kept out."""

from __future__ import annotations

import pytest
import yaml

from apps.agents.models import Agent, AgentSecret
from apps.agents.services import agent_create, agent_secret_set
from apps.llm import services as llm
from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy
from apps.registry.documents import registry_apply, registry_export
from apps.registry.tests.conftest import OBJECT_SCHEMA
from apps.tools.models import Tool
from apps.tools.services import tool_create
from daarion.infra.errors import ValidationFailed
from apps.access.models import ChangeRecord

SECRET_VALUES = ("sk-stub-STORED", "hdr-STORED", "agent-STORED", "sk-NEW-IN-DOC")


@pytest.fixture
def registry(transactional_db):
    stub = llm.provider_create(name="stub", kind="stub", api_key=SECRET_VALUES[0])
    llm.provider_create(name="openai", kind="openai", api_key_env="OPENAI_API_KEY", extra_headers={"OpenAI-Beta": "x"})
    small = llm.logical_model_create(name="small", input_price_per_mtok="0.15", output_price_per_mtok="0.6")
    llm.deployment_create(logical_model=small, provider=stub, upstream_model="small-v1")
    big = llm.logical_model_create(name="big", fallbacks=["small"], description="the big one", context_window=128000)
    llm.deployment_create(logical_model=big, provider=stub, upstream_model="big-a", weight=3, rpm_limit=100)
    llm.deployment_create(
        logical_model=big, provider=Provider.objects.get(name="openai"), upstream_model="gpt-4.1", enabled=False
    )
    llm.logical_model_create(name="empty")
    sofia = agent_create(
        agent_id="agent:sofia",
        name="Sofia",
        microdao_id="microdao:7",
        model="big",
        character={"bio": ["Product lead"], "topics": ["roadmaps"]},
        temperature=0.2,
        memory_kinds=["kb"],
    )
    agent_secret_set(agent=sofia, name="OPENAI_API_KEY", value=SECRET_VALUES[2])
    agent_create(agent_id="agent:pm", name="PM", microdao_id="microdao:7", model="small", tool_mode="text")
    # Policies after the agents: an agent policy must name an agent that exists.
    llm.rate_limit_policy_create(scope="default", rpm=60)
    llm.rate_limit_policy_create(scope="agent", subject="agent:sofia", tpm=5000, max_concurrent=2)
    tool_create(
        tool_id="projects.list",
        name="Projects",
        input_schema=OBJECT_SCHEMA,
        executor="http",
        target="http://svc:8000/projects",
        allowed_agents=["agent:sofia", "agent:pm"],
        read_only=True,
        secret_headers={"X-Key": SECRET_VALUES[1]},
        output_schema={"type": "array"},
    )
    tool_create(
        tool_id="followups.create",
        name="Follow-up",
        input_schema={"type": "object"},
        executor="python",
        target="followups.create",
        rate_limit_per_minute=5,
    )


def _no_secrets(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


def test_export_then_apply_is_a_no_op(token_client, registry):
    exported = token_client.get("/export")
    assert exported.status_code == 200
    _no_secrets(exported.text)
    document = exported.json()
    assert set(document) == {"providers", "models", "rate_limits", "tools", "agents", "mcp_servers"}
    assert document["agents"][1]["secrets"] == {"OPENAI_API_KEY": {"env": "AGENT_SECRET_SOFIA_OPENAI_API_KEY"}}
    records = ChangeRecord.objects.count()
    for query in ("?dry_run=1", ""):
        plan = token_client.post(f"/apply{query}", json=document)
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert body["summary"] == {"create": 0, "update": 0, "delete": 0, "unchanged": 11}, body
        _no_secrets(plan.text)
    assert ChangeRecord.objects.count() == records  # nothing written at all
    # The same through YAML, both ways.
    as_yaml = token_client.get("/export?format=yaml")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == document
    plan = token_client.post("/apply", content=as_yaml.content, headers={"Content-Type": "application/yaml"})
    assert plan.json()["summary"]["unchanged"] == 11
    # Secrets are still what they were.
    assert Provider.objects.get(name="stub").api_key == SECRET_VALUES[0]
    assert AgentSecret.objects.get().value == SECRET_VALUES[2]
    assert SECRET_VALUES[1] in Tool.objects.get(tool_id="projects.list").secret_headers


def _changed_document(document: dict) -> dict:
    document["providers"]["stub"]["api_key"] = SECRET_VALUES[3]  # rotate a key
    del document["providers"]["openai"]  # delete (its deployment goes with big's change)
    document["models"]["big"]["deployments"] = [document["models"]["big"]["deployments"][0]]
    document["models"]["small"]["fallbacks"] = ["fresh"]  # new model as a fallback
    document["models"]["fresh"] = {"provider": "stub", "name": "fresh-1", "price": {"input": 1, "output": 2}}
    document["models"]["big"]["fallbacks"] = []
    del document["models"]["empty"]
    document["rate_limits"] = [{"scope": "default", "rpm": 120}]
    document["tools"][1]["enabled"] = False  # projects.list (sorted by id)
    document["tools"][1]["allowed_agents"] = ["agent:sofia"]  # agent:pm goes below
    document["tools"].append(
        {
            "id": "new.tool",
            "name": "New",
            "input_schema": OBJECT_SCHEMA,
            "executor": "http",
            "target": "http://svc:8000/new",
            "secrets": {"Authorization": {"value": "Bearer sk-NEW-IN-DOC"}},
        }
    )
    document["agents"] = [a for a in document["agents"] if a["id"] != "agent:pm"]
    document["agents"][0]["system_prompt"] = "Be brief."
    return document


def test_dry_run_plans_every_action_and_changes_nothing(token_client, registry):
    document = _changed_document(token_client.get("/export").json())
    before = (token_client.get("/export").json(), ChangeRecord.objects.count())
    dry = token_client.post("/apply?dry_run=true", json=document)
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dry_run"] is True and plan["applied"] is False
    actions = {(c["type"], c["id"]): c["action"] for c in plan["changes"]}
    assert actions == {
        ("provider", "stub"): "update",
        ("provider", "openai"): "delete",
        ("model", "small"): "update",
        ("model", "big"): "update",
        ("model", "fresh"): "create",
        ("model", "empty"): "delete",
        ("rate_limit", "default"): "update",
        ("rate_limit", "agent:agent:sofia"): "delete",
        ("tool", "followups.create"): "unchanged",
        ("tool", "projects.list"): "update",
        ("tool", "new.tool"): "create",
        ("agent", "agent:sofia"): "update",
        ("agent", "agent:pm"): "delete",
    }
    changes = {(c["type"], c["id"]): c["changes"] for c in plan["changes"]}
    assert changes[("provider", "stub")] == {"api_key": ["(changed)", "(changed)"]}
    assert changes[("model", "big")]["fallbacks"] == [["small"], []]
    assert changes[("tool", "projects.list")] == {
        "enabled": [True, False],
        "allowed_agents": [["agent:pm", "agent:sofia"], ["agent:sofia"]],
    }
    _no_secrets(dry.text)
    assert (token_client.get("/export").json(), ChangeRecord.objects.count()) == before

    applied = token_client.post("/apply", json=document)
    assert applied.status_code == 200 and applied.json()["applied"] is True
    assert applied.json()["changes"] == plan["changes"]  # the plan is what was done
    assert not Provider.objects.filter(name="openai").exists() and not LogicalModel.objects.filter(name="empty").exists()
    assert LogicalModel.objects.get(name="small").fallbacks == ["fresh"]
    assert Provider.objects.get(name="stub").api_key == SECRET_VALUES[3]
    assert list(RateLimitPolicy.objects.values_list("scope", "rpm")) == [("default", 120)]
    assert Tool.objects.get(tool_id="new.tool").secret_headers and not Tool.objects.get(tool_id="projects.list").enabled
    assert list(Agent.objects.values_list("id", flat=True)) == ["agent:sofia"]
    assert set(ChangeRecord.objects.filter(source="api").values_list("actor", flat=True)) == {"token:ci-deployer"}
    # And now it is a no-op.
    again = token_client.post("/apply", json=token_client.get("/export").json()).json()
    assert again["summary"]["create"] == again["summary"]["update"] == again["summary"]["delete"] == 0


@pytest.mark.parametrize(
    "mutate, status, path",
    [
        (lambda d: d["models"]["small"].update(fallbacks=["big"]), 422, "models.small.fallbacks"),
        (lambda d: d["models"]["small"].update(provider="ghost"), 422, "models.small.provider"),
        (
            lambda d: d["tools"][0].update(input_schema={"type": "object", "properties": {"a": {"type": 1}}}),
            422,
            "tools[0].input_schema",
        ),
        (lambda d: d["tools"].append(dict(d["tools"][0])), 422, "tools[2].id"),
        (lambda d: d["agents"][0].update(character={"bio": 5}), 422, "agents[0].character.bio"),
        (lambda d: d["rate_limits"].append({"scope": "agent", "rpm": 1}), 422, "rate_limits[2].subject"),
        (lambda d: d["providers"]["stub"].update(colour="red"), 422, "providers.stub"),
        (lambda d: d.update(stuff=1), 422, "(root)"),
        (
            lambda d: d["tools"].append(
                {
                    "id": "t.x",
                    "name": "X",
                    "input_schema": OBJECT_SCHEMA,
                    "executor": "http",
                    "target": "http://svc/x",
                    "secrets": {"X-Key": {"env": "DATABASE_URL"}},
                }
            ),
            422,
            "tools[2].secrets.X-Key",
        ),
    ],
)
def test_a_bad_document_changes_nothing(token_client, registry, mutate, status, path):
    document = token_client.get("/export").json()
    document["providers"]["added"] = {"kind": "stub"}  # valid, and must be rolled back with the rest
    mutate(document)
    records = ChangeRecord.objects.count()
    for query in ("?dry_run=1", ""):
        response = token_client.post(f"/apply{query}", json=document)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert any(d["path"].startswith(path) for d in error["details"]), error
    assert not Provider.objects.filter(name="added").exists() and ChangeRecord.objects.count() == records


def test_bodies_the_apply_endpoint_refuses(token_client):
    assert token_client.post("/apply", content=b"providers: [", headers={"Content-Type": "application/yaml"}).status_code == 400
    assert token_client.post("/apply", json=[1]).json()["error"]["details"][0]["path"] == "(root)"
    assert token_client.post("/apply?dry_run=perhaps", json={}).json()["error"]["type"] == "validation_error"


def test_the_engine_resolves_env_references_only_when_asked(registry):
    document = registry_export()
    document["tools"].append(
        {
            "id": "env.tool",
            "name": "E",
            "input_schema": OBJECT_SCHEMA,
            "executor": "http",
            "target": "http://svc/e",
            "secrets": {"X-Key": {"env": "MY_TOOL_KEY"}},
        }
    )
    with pytest.raises(ValidationFailed):
        registry_apply(document=document, environ={"MY_TOOL_KEY": "from-env"})
    plan = registry_apply(document=document, resolve_env=True, environ={"MY_TOOL_KEY": "from-env"})
    assert [i.action for i in plan.items if i.id == "env.tool"] == ["create"]
    assert "from-env" in Tool.objects.get(tool_id="env.tool").secret_headers
    # Without prune, objects a section leaves out stay.
    partial = {"models": {"small": registry_export()["models"]["small"]}}
    plan = registry_apply(document=partial, prune=False)
    assert plan.summary() == {"create": 0, "update": 0, "delete": 0, "unchanged": 1}
    assert Deployment.objects.filter(logical_model__name="big").count() == 2


def test_the_plan_prints_as_the_import_command_prints_it(registry):
    document = registry_export()
    document["models"]["fresh"] = {"provider": "stub", "name": "fresh-1"}
    del document["models"]["empty"]
    plan = registry_apply(document=document, dry_run=True)
    assert plan.lines() == [
        "would be created: models.fresh",
        "would be deleted: models.empty",
        "dry run: 1 would be created, 0 would be updated, 10 unchanged, 1 would be deleted",
    ]
    assert LogicalModel.objects.filter(name="empty").exists() and not LogicalModel.objects.filter(name="fresh").exists()
    assert registry_apply(document=document).lines()[-1] == "1 created, 0 updated, 10 unchanged, 1 deleted"


def test_agent_secret_headers_travel_in_documents(registry):
    document = registry_export()
    document["tools"][1]["agent_secret_headers"] = {"X-Github-Token": "GITHUB_TOKEN"}  # projects.list
    plan = registry_apply(document=document)
    assert [i.changes for i in plan.items if i.id == "projects.list"] == [
        {"agent_secret_headers": [{}, {"X-Github-Token": "GITHUB_TOKEN"}]}
    ]
    exported = registry_export()
    assert exported["tools"][1]["agent_secret_headers"] == {"X-Github-Token": "GITHUB_TOKEN"}
    assert registry_apply(document=exported).summary()["update"] == 0
    bad = registry_export()
    bad["tools"][0]["agent_secret_headers"] = {"X-Key": "K"}  # followups.create is a python tool
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document=bad)
    assert raised.value.details[0]["path"] == "tools[0].agent_secret_headers"


# --- allowed_agents name real agents -----------------------------------------------------

UNKNOWN_AGENT = (
    "no agent 'agent:ctoo' in the registry (create the agent first, or list it under agents: in the same registry document)"
)


def test_a_document_may_create_an_agent_and_a_tool_that_allows_it(token_client, registry):
    # The tool comes first in the document: agents are applied before tools all the same.
    document = {
        "tools": [
            {
                "id": "plans.list",
                "name": "Plans",
                "input_schema": OBJECT_SCHEMA,
                "executor": "http",
                "target": "http://svc:8000/plans",
                "allowed_agents": ["agent:sofia", "agent:cto"],
            }
        ],
        "agents": [{"id": "agent:cto", "name": "CTO", "microdao_id": "microdao:7", "model": "small"}],
    }
    for query in ("?dry_run=1&prune=0", "?prune=0"):
        response = token_client.post(f"/apply{query}", json=document)
        assert response.status_code == 200, response.text
        assert [(c["type"], c["id"], c["action"]) for c in response.json()["changes"]] == [
            ("agent", "agent:cto", "create"),
            ("tool", "plans.list", "create"),
        ]
    assert Tool.objects.get(tool_id="plans.list").allowed_agents == ["agent:cto", "agent:sofia"]


def _refused_alike(token_client, document: dict) -> dict:
    """The dry run and the apply refuse `document` with the same 422, and nothing changes."""
    before = (token_client.get("/export").json(), ChangeRecord.objects.count())
    dry = token_client.post("/apply?dry_run=1", json=document)
    applied = token_client.post("/apply", json=document)
    assert dry.status_code == applied.status_code == 422, applied.text
    assert dry.json() == applied.json()  # the plan refuses exactly what the apply refuses
    assert (token_client.get("/export").json(), ChangeRecord.objects.count()) == before
    return applied.json()["error"]


def test_an_unknown_agent_in_a_document_is_refused_at_its_path(token_client, registry):
    document = token_client.get("/export").json()
    document["agents"].append({"id": "agent:cto", "name": "CTO", "microdao_id": "microdao:7", "model": "small"})
    document["tools"][1]["allowed_agents"] = ["agent:cto", "agent:ctoo", "agent:sofia"]  # projects.list
    error = _refused_alike(token_client, document)
    assert error["details"] == [{"path": "tools[1].allowed_agents", "message": UNKNOWN_AGENT}]
    assert error["message"] == f"tools[1].allowed_agents: {UNKNOWN_AGENT}"
    assert not Agent.objects.filter(id="agent:cto").exists()  # all or nothing: the new agent too


def test_pruning_an_agent_that_a_tool_of_the_document_allows_is_refused(token_client, registry):
    document = token_client.get("/export").json()
    document["agents"] = [a for a in document["agents"] if a["id"] != "agent:pm"]  # projects.list still allows it
    assert _refused_alike(token_client, document)["details"] == [
        {
            "path": "tools[1].allowed_agents",
            "message": "agent 'agent:pm' is deleted by this document (it is not under agents:); "
            "take it out of this list or keep the agent",
        }
    ]
    # Without pruning the agent stays, and the document is fine.
    assert token_client.post("/apply?prune=0", json=document).status_code == 200
    assert Agent.objects.filter(id="agent:pm").exists()


def test_pruned_agents_leave_the_tools_the_document_does_not_cover(token_client, registry):
    from apps.tools.services import tool_update

    agent_create(agent_id="agent:cto", name="CTO", microdao_id="microdao:7", model="small")
    tool_update(tool=Tool.objects.get(tool_id="projects.list"), allowed_agents=["agent:cto", "agent:pm", "agent:sofia"])
    document = {"agents": [a for a in token_client.get("/export").json()["agents"] if a["id"] == "agent:sofia"]}
    dry = token_client.post("/apply?dry_run=1", json=document)
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert [(c["type"], c["id"], c["action"], c["changes"]) for c in plan["changes"]] == [
        ("agent", "agent:sofia", "unchanged", {}),
        ("agent", "agent:cto", "delete", {}),
        ("tool", "projects.list", "update", {"allowed_agents": [["agent:cto", "agent:pm", "agent:sofia"], ["agent:sofia"]]}),
        ("agent", "agent:pm", "delete", {}),
    ]
    assert plan["summary"] == {"create": 0, "update": 1, "delete": 2, "unchanged": 1}
    assert Tool.objects.get(tool_id="projects.list").allowed_agents == ["agent:cto", "agent:pm", "agent:sofia"]

    applied = token_client.post("/apply", json=document).json()
    assert applied["changes"] == plan["changes"]
    tool = Tool.objects.get(tool_id="projects.list")
    assert (tool.allowed_agents, tool.version) == (["agent:sofia"], 4)
    records = ChangeRecord.objects.filter(object_type="tools.Tool", source="api").order_by("id")
    assert [(r.actor, r.changes["allowed_agents"]) for r in records] == [
        ("token:ci-deployer", [["agent:cto", "agent:pm", "agent:sofia"], ["agent:pm", "agent:sofia"]]),
        ("token:ci-deployer", [["agent:pm", "agent:sofia"], ["agent:sofia"]]),
    ]


def test_a_document_may_create_an_agent_and_its_policy(token_client, registry):
    # The policy comes first in the document: agents are applied before policies all the same.
    document = {
        "rate_limits": [{"scope": "agent", "subject": "agent:cto", "rpm": 3}],
        "agents": [{"id": "agent:cto", "name": "CTO", "microdao_id": "microdao:7", "model": "small"}],
    }
    for query in ("?dry_run=1&prune=0", "?prune=0"):
        response = token_client.post(f"/apply{query}", json=document)
        assert response.status_code == 200, response.text
        assert [(c["type"], c["id"], c["action"]) for c in response.json()["changes"]] == [
            ("agent", "agent:cto", "create"),
            ("rate_limit", "agent:agent:cto", "create"),
        ]
    assert RateLimitPolicy.objects.get(subject="agent:cto").rpm == 3


def test_an_unknown_agent_policy_in_a_document_is_refused_at_its_path(token_client, registry):
    document = token_client.get("/export").json()
    document["agents"].append({"id": "agent:cto", "name": "CTO", "microdao_id": "microdao:7", "model": "small"})
    document["rate_limits"].append({"scope": "agent", "subject": "agent:ctoo", "rpm": 1})
    error = _refused_alike(token_client, document)
    assert error["details"] == [{"path": "rate_limits[2].subject", "message": UNKNOWN_AGENT}]
    assert error["message"] == f"rate_limits[2].subject: {UNKNOWN_AGENT}"
    assert not Agent.objects.filter(id="agent:cto").exists()  # all or nothing: the new agent too


def test_pruning_an_agent_whose_policy_the_document_keeps_is_refused(token_client, registry):
    from apps.tools.services import tool_update

    llm.rate_limit_policy_create(scope="agent", subject="agent:pm", rpm=4)
    tool_update(tool=Tool.objects.get(tool_id="projects.list"), allowed_agents=["agent:sofia"])
    document = token_client.get("/export").json()
    document["agents"] = [a for a in document["agents"] if a["id"] != "agent:pm"]  # its policy stays listed
    assert document["rate_limits"][0]["subject"] == "agent:pm"
    assert _refused_alike(token_client, document)["details"] == [
        {
            "path": "rate_limits[0].subject",
            "message": "agent 'agent:pm' is deleted by this document (it is not under agents:); "
            "take this policy out or keep the agent",
        }
    ]
    # Taking the policy out too: both go, the policy once in the plan.
    document["rate_limits"] = document["rate_limits"][1:]
    plan = token_client.post("/apply", json=document).json()
    assert [(c["type"], c["id"], c["action"]) for c in plan["changes"] if c["action"] != "unchanged"] == [
        ("rate_limit", "agent:agent:pm", "delete"),
        ("agent", "agent:pm", "delete"),
    ]
    assert not RateLimitPolicy.objects.filter(subject="agent:pm").exists()


def test_pruned_agents_take_their_policies_when_the_document_has_no_rate_limits(token_client, registry):
    llm.rate_limit_policy_create(scope="agent", subject="agent:pm", rpm=4)
    llm.rate_limit_policy_create(scope="microdao", subject="microdao:7", rpm=40)
    document = {"agents": [a for a in token_client.get("/export").json()["agents"] if a["id"] == "agent:sofia"]}
    dry = token_client.post("/apply?dry_run=1", json=document).json()
    assert [(c["type"], c["id"], c["action"]) for c in dry["changes"]] == [
        ("agent", "agent:sofia", "unchanged"),
        ("agent", "agent:pm", "delete"),
        ("rate_limit", "agent:agent:pm", "delete"),
        ("tool", "projects.list", "update"),
    ]
    assert RateLimitPolicy.objects.filter(subject="agent:pm").exists()  # a dry run
    applied = token_client.post("/apply", json=document).json()
    assert applied["changes"] == dry["changes"]
    assert sorted(RateLimitPolicy.objects.values_list("scope", "subject")) == [
        ("agent", "agent:sofia"),
        ("default", ""),
        ("microdao", "microdao:7"),
    ]
    record = ChangeRecord.objects.get(object_type="llm.RateLimitPolicy", action="delete")
    assert (record.object_repr, record.actor, record.source) == ("agent:agent:pm", "token:ci-deployer", "api")
