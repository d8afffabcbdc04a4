"""The agent registry's services: validation, versions, encrypted secrets, character import."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.agents.character import agent_id_for_name
from apps.agents.models import Agent, AgentSecret
from apps.agents.selectors import blueprint_get
from apps.agents.services import (
    agent_delete,
    agent_import_character,
    agent_secret_delete,
    agent_secret_set,
    agent_update,
)
from apps.agents.tests.factories import make_agent
from daarion.infra.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def test_create_stores_the_blueprint():
    agent = make_agent()
    assert agent.version == 1
    stored = Agent.objects.get(pk="agent:sofia")
    assert stored.character["topics"] == ["projects", "roadmaps"]
    assert stored.max_tool_steps == 4


def test_create_twice_is_a_conflict():
    make_agent()
    with pytest.raises(Conflict) as info:
        make_agent()
    assert info.value.type == "agent_exists"


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"agent_id": "sofia"}, "id"),
        ({"agent_id": "agent:Sofia"}, "id"),
        ({"model": ""}, "model"),
        ({"name": ""}, "name"),
        ({"microdao_id": ""}, "microdao_id"),
        ({"max_tool_steps": 17}, "max_tool_steps"),
        ({"memory_recall_limit": 51}, "memory_recall_limit"),
        ({"memory_kinds": ["conversation", "Not A Kind"]}, "memory_kinds"),
        ({"memory_kinds": "conversation"}, "memory_kinds"),
        ({"character": ["not", "an", "object"]}, "character"),
        ({"character": {"bio": 5}}, "character.bio"),
        ({"character": {"topics": "projects"}}, "character.topics"),
        ({"character": {"messageExamples": [[{"user": "x"}]]}}, "character.messageExamples.0.0"),
    ],
)
def test_create_refuses_bad_fields(overrides, path):
    agent_id = overrides.pop("agent_id", "agent:sofia")
    with pytest.raises(ValidationFailed) as info:
        make_agent(agent_id, **overrides)
    assert path in [d["path"] for d in info.value.details], info.value.details
    assert not Agent.objects.exists()


def test_update_raises_the_version_only_on_change():
    agent = make_agent()
    same = agent_update(agent=agent, name="Sofia-Prime")
    assert same.version == 1
    changed = agent_update(agent=agent, system_prompt="Be brief.", max_tool_steps=2)
    assert changed.version == 2
    assert Agent.objects.get(pk=agent.pk).system_prompt == "Be brief."


def test_update_refuses_unknown_and_bad_fields():
    agent = make_agent()
    with pytest.raises(ValidationFailed) as info:
        agent_update(agent=agent, version=9)
    assert info.value.details[0]["path"] == "version"
    with pytest.raises(ValidationFailed):
        agent_update(agent=agent, max_tool_steps=99)
    assert Agent.objects.get(pk=agent.pk).max_tool_steps == 4


def test_secrets_are_encrypted_at_rest_and_bump_the_version():
    agent = make_agent()
    agent_secret_set(agent=agent, name="OPENAI_API_KEY", value="sk-test-1234567890")
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM agents_agentsecret")
        (raw,) = cursor.fetchone()
    assert raw.startswith("enc:v1:") and "sk-test" not in raw
    assert AgentSecret.objects.get().value == "sk-test-1234567890"
    assert Agent.objects.get(pk=agent.pk).version == 2
    assert agent_secret_delete(agent=agent, name="OPENAI_API_KEY") is True
    assert agent_secret_delete(agent=agent, name="OPENAI_API_KEY") is False
    assert Agent.objects.get(pk=agent.pk).version == 3


@pytest.mark.parametrize("name, value", [("bad name", "x"), ("", "x"), ("OK", "")])
def test_secret_refuses_bad_names_and_empty_values(name, value):
    agent = make_agent()
    with pytest.raises(ValidationFailed):
        agent_secret_set(agent=agent, name=name, value=value)
    assert not AgentSecret.objects.exists()


def test_blueprint_snapshot_follows_edits():
    agent = make_agent()
    assert blueprint_get("agent:sofia").version == 1
    agent_update(agent=agent, model="other-model")
    # bump_version runs on commit; this test's transaction never commits, so ask again
    # explicitly the way a process that missed the bump eventually would.
    from apps.agents.selectors import _blueprints

    _blueprints.invalidate()
    assert blueprint_get("agent:sofia").model == "other-model"


def test_delete_removes_secrets():
    agent = make_agent()
    agent_secret_set(agent=agent, name="TOKEN", value="abc")
    agent_delete(agent=agent)
    assert not Agent.objects.exists() and not AgentSecret.objects.exists()


def _tool(tool_id: str, allowed_agents):
    from apps.tools.services import tool_create

    return tool_create(
        tool_id=tool_id,
        name=tool_id,
        input_schema={"type": "object"},
        executor="python",
        target="followups.create",
        allowed_agents=allowed_agents,
    )


def test_delete_takes_the_agent_out_of_every_tool_and_logs_it():
    from apps.tools.models import Tool
    from apps.access.audit import acting_as
    from apps.access.models import ChangeRecord

    make_agent()
    pm = make_agent("agent:pm", name="PM")
    _tool("t.both", ["agent:pm", "agent:sofia"])
    _tool("t.pm", ["agent:pm"])
    _tool("t.every", None)
    with acting_as("token:ci-deployer", "api"):
        assert agent_delete(agent=pm) == ["t.both", "t.pm"]
    # t.pm allows no agent now ([]), never every agent (None).
    assert sorted(Tool.objects.values_list("tool_id", "allowed_agents", "version")) == [
        ("t.both", ["agent:sofia"], 2),
        ("t.every", None, 1),
        ("t.pm", [], 2),
    ]
    # Each changed tool is in the change log, by whoever deleted the agent, beside the agent's record.
    records = ChangeRecord.objects.filter(actor="token:ci-deployer").order_by("id")
    assert [(r.object_type, r.object_repr, r.action, r.source) for r in records] == [
        ("tools.Tool", "t.both", "update", "api"),
        ("tools.Tool", "t.pm", "update", "api"),
        ("agents.Agent", "PM (agent:pm)", "delete", "api"),
    ]
    assert records[1].changes["allowed_agents"] == [["agent:pm"], []]
    # The tools stay valid: their next unrelated edit passes the rule.
    from apps.tools.services import tool_update

    assert tool_update(tool=Tool.objects.get(tool_id="t.both"), description="still fine").version == 3


def test_a_delete_that_rolls_back_keeps_the_tools_as_they_were():
    from django.db import transaction

    from apps.tools.models import Tool

    pm = make_agent("agent:pm", name="PM")
    _tool("t.pm", ["agent:pm"])
    with pytest.raises(RuntimeError), transaction.atomic():
        agent_delete(agent=pm)
        raise RuntimeError("the caller's transaction fails after the delete")
    assert Agent.objects.filter(pk="agent:pm").exists()
    assert Tool.objects.get(tool_id="t.pm").allowed_agents == ["agent:pm"]


def test_agent_id_from_name_is_stable_and_valid():
    assert agent_id_for_name("Sofia-Prime") == "agent:sofia-prime"
    assert agent_id_for_name("  Žofia  Prime!! ") == "agent:zofia-prime"
    assert agent_id_for_name("???") == "agent:unnamed"
    assert agent_id_for_name("x" * 200) == "agent:" + "x" * 62


def test_import_creates_then_updates_with_secrets():
    document = {
        "name": "Sofia-Prime",
        "system": "You are Sofia.",
        "bio": "Keeps projects on track.",
        "settings": {
            "model": "test-model",
            "microdao_id": "microdao:7",
            "secrets": {"TOKEN": "secret-1"},
            "memory": {"recall_limit": 3, "kinds": ["conversation"]},
            "max_tool_steps": 2,
        },
    }
    first = agent_import_character(document=document)
    assert (first.agent_id, first.created, first.secrets) == ("agent:sofia-prime", True, ["TOKEN"])
    agent = Agent.objects.get(pk="agent:sofia-prime")
    assert agent.memory_recall_limit == 3 and agent.memory_kinds == ["conversation"] and agent.max_tool_steps == 2
    assert "secrets" not in agent.character.get("settings", {})
    assert agent.secrets.get(name="TOKEN").value == "secret-1"

    again = agent_import_character(document=document)
    assert again.created is False and again.changed is False

    agent_update(agent=agent, enabled=False)
    agent_import_character(document=document)
    assert Agent.objects.get(pk="agent:sofia-prime").enabled is False  # the file did not say

    document["settings"]["secrets"]["TOKEN"] = "secret-2"
    third = agent_import_character(document=document)
    assert third.changed is True
    assert Agent.objects.get(pk="agent:sofia-prime").secrets.get(name="TOKEN").value == "secret-2"


def test_import_uses_an_id_in_our_form_and_ignores_foreign_ids():
    assert (
        agent_import_character(document={"name": "A", "id": "agent:custom"}, microdao_id="m", model="x").agent_id
        == "agent:custom"
    )
    uuid_id = "0b7e4a2c-9d4d-4e5b-8a77-123456789abc"
    assert agent_import_character(document={"name": "B", "id": uuid_id}, microdao_id="m", model="x").agent_id == "agent:b"


@pytest.mark.parametrize(
    "document, path",
    [
        ([], "(document)"),
        ({}, "(document)"),
        ({"name": ""}, "name"),
        ({"name": "A", "lore": "x"}, "lore"),
        ({"name": "A", "settings": {"secrets": {"K": 1}}}, "settings.secrets.K"),
        ({"name": "A", "settings": {"model": "x"}}, "settings.microdao_id"),
    ],
)
def test_import_refuses_bad_documents(document, path):
    with pytest.raises(ValidationFailed) as info:
        agent_import_character(document=document)
    assert path in [d["path"] for d in info.value.details], info.value.details
    assert not Agent.objects.exists()
