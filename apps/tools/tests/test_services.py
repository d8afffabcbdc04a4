"""Saving tools: one validation path, versions, agents, secrets, live registry."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from apps.tools.models import Tool
from apps.tools.registry import function_names_for, registry_snapshot
from apps.tools.services import tool_create, tool_delete, tool_update, tools_forget_agent
from apps.tools.tests.conftest import OBJECT_SCHEMA
from daarion.infra import agent_directory
from apps.access.audit import acting_as
from daarion.infra.errors import ValidationFailed
from apps.access.models import ChangeRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_and_version_bumps_only_on_change(make_tool):
    tool = make_tool("projects.list")
    assert tool.version == 1
    tool_update(tool=tool, name="projects.list")  # same value: no new version
    assert Tool.objects.get(pk=tool.pk).version == 1
    tool_update(tool=tool, description="lists projects")
    tool_update(tool=tool, timeout=3.0)
    assert Tool.objects.get(pk=tool.pk).version == 3


@pytest.mark.parametrize(
    "tool_id",
    ["", "has space", "slash/id", "x" * 129, "ünicode"],
)
def test_bad_ids_are_refused(make_tool, tool_id):
    with pytest.raises(ValidationFailed) as exc:
        make_tool(tool_id)
    assert "tool_id" in exc.value.by_path()


def test_duplicate_id_is_refused(make_tool):
    make_tool("a.b")
    with pytest.raises(ValidationFailed) as exc:
        make_tool("a.b")
    assert "tool_id" in exc.value.by_path()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("input_schema", {"type": "objekt"}, "not a valid JSON Schema"),
        ("input_schema", {"type": "array"}, '"type": "object"'),
        ("input_schema", [1, 2], "must be a JSON object"),
        ("output_schema", {"minItems": -1}, "not a valid JSON Schema"),
        ("output_schema", {"properties": {"a": {"type": 12}}}, "not a valid JSON Schema 2020-12 at properties/a/type"),
        ("executor", "shell", "not a valid choice"),
        ("target", "ftp://example.com/x", "http(s):// URL"),
        ("target", "http://user:pw@example.com/x", "no credentials"),
        ("timeout", 0, "greater than or equal"),
        ("timeout", 301, "less than or equal"),
        ("allowed_agents", "agent:sofia", "list of agent ids"),
    ],
)
def test_each_invalid_field_is_named(make_tool, field, value, fragment):
    with pytest.raises(ValidationFailed) as exc:
        make_tool("bad.tool", **{field: value})
    messages = exc.value.by_path()
    assert field in messages, messages
    assert any(fragment in m for m in messages[field]), messages


def test_python_target_must_be_registered(make_tool):
    with pytest.raises(ValidationFailed) as exc:
        make_tool("py.tool", executor="python", target="os.system")
    assert "no @tool_function" in exc.value.by_path()["target"][0]
    tool = make_tool("py.ok", executor="python", target="followups.create")
    assert tool.target == "followups.create"


def test_allowed_agents_null_list_and_empty(make_tool):
    everyone = make_tool("t.all", allowed_agents=None)
    some = make_tool("t.some", allowed_agents=[" agent:pm", "agent:cto", "agent:pm"])
    nobody = make_tool("t.none", allowed_agents=[])
    assert some.allowed_agents == ["agent:cto", "agent:pm"]
    tools = registry_snapshot.get(recheck=True).tools
    assert tools["t.all"].allows("agent:x")
    assert tools["t.some"].allows("agent:pm") and not tools["t.some"].allows("agent:x")
    assert not tools["t.none"].allows("agent:pm")
    assert everyone.allowed_agents is None and nobody.allowed_agents == []


def _create(tool_id: str, **fields):
    return tool_create(
        tool_id=tool_id, name=tool_id, input_schema=OBJECT_SCHEMA, executor="http", target="http://127.0.0.1:9/echo", **fields
    )


def test_allowed_agents_must_name_real_agents(make_agents):
    make_agents("agent:sofia", "agent:pm")
    with pytest.raises(ValidationFailed) as exc:
        _create("t.typo", allowed_agents=["agent:sofia", "agent:pmm", "agent:ctoo", "agent:pmm"])
    assert exc.value.by_path() == {
        "allowed_agents": [
            "no agent 'agent:ctoo' in the registry (create the agent first, or list it under agents: in the same registry document)",
            "no agent 'agent:pmm' in the registry (create the agent first, or list it under agents: in the same registry document)",
        ]
    }
    assert not Tool.objects.exists()

    tool = _create("t.ok", allowed_agents=["agent:sofia"])
    with pytest.raises(ValidationFailed) as exc:
        tool_update(tool=tool, allowed_agents=["agent:sofia", "agent:ghost"])
    assert list(exc.value.by_path()) == ["allowed_agents"] and "'agent:ghost'" in exc.value.messages[0]
    stored = Tool.objects.get(pk=tool.pk)
    assert (stored.allowed_agents, stored.version) == (["agent:sofia"], 1)
    # null (every agent) and [] (none) name nobody, so they need no agent at all.
    assert _create("t.all", allowed_agents=None).allowed_agents is None
    assert _create("t.none", allowed_agents=[]).allowed_agents == []


def test_without_an_agent_directory_every_id_is_accepted(monkeypatch):
    # Toolcore without the agents app: no resolver is registered, so nothing can be checked.
    monkeypatch.setattr(agent_directory.resolver, "function", None)
    assert _create("t.free", allowed_agents=["agent:anyone"]).allowed_agents == ["agent:anyone"]


def test_the_agent_directory_takes_one_resolver():
    registered = agent_directory.resolver.function
    assert registered is not None  # apps.agents registered it at start-up
    agent_directory.register_agent_resolver(registered)  # the same one again: a no-op
    with pytest.raises(RuntimeError, match="registered already"):
        agent_directory.register_agent_resolver(lambda ids: [])


def test_forgetting_an_agent_narrows_every_list_and_logs_each_tool(make_tool):
    both = make_tool("t.both", allowed_agents=["agent:pm", "agent:sofia"])
    only = make_tool("t.only", allowed_agents=["agent:pm"])
    everyone = make_tool("t.every", allowed_agents=None)
    other = make_tool("t.other", allowed_agents=["agent:sofia"])
    registry_snapshot.get(recheck=True)
    with acting_as("user:ops", "admin"):
        changed = tools_forget_agent(agent_id="agent:pm")
    assert [t.tool_id for t in changed] == ["t.both", "t.only"]
    stored = {t.tool_id: t for t in Tool.objects.all()}
    assert (stored["t.both"].allowed_agents, stored["t.both"].version) == (["agent:sofia"], 2)
    assert (stored["t.only"].allowed_agents, stored["t.only"].version) == ([], 2)  # no agent, not every agent
    assert (stored["t.every"].allowed_agents, stored["t.every"].version) == (None, 1)
    assert (stored["t.other"].allowed_agents, stored["t.other"].version) == (["agent:sofia"], 1)
    records = ChangeRecord.objects.filter(object_type="tools.Tool", action="update").order_by("id")
    assert [(r.object_id, r.actor, r.source, r.changes["allowed_agents"]) for r in records] == [
        (str(both.pk), "user:ops", "admin", [["agent:pm", "agent:sofia"], ["agent:sofia"]]),
        (str(only.pk), "user:ops", "admin", [["agent:pm"], []]),
    ]
    # The bump reached the live registry: a call as agent:pm is no longer allowed.
    tools = registry_snapshot.get().tools
    assert not tools["t.both"].allows("agent:pm") and not tools["t.only"].allows("agent:pm")
    assert tools_forget_agent(agent_id="agent:pm") == [] and everyone.version == other.version == 1


def test_secret_headers_are_encrypted_merged_and_never_public(make_tool):
    tool = make_tool("t.secret", secret_headers={"X-Api-Key": "sk-very-secret-1"})
    with connection.cursor() as cur:
        cur.execute("SELECT secret_headers FROM tools_tool WHERE id = %s", [tool.pk])
        stored = cur.fetchone()[0]
    assert stored.startswith("enc:v1:") and "sk-very-secret" not in stored
    tool_update(tool=tool, secret_headers={"Authorization": "Bearer abc"})
    assert json.loads(Tool.objects.get(pk=tool.pk).secret_headers) == {
        "Authorization": "Bearer abc",
        "X-Api-Key": "sk-very-secret-1",
    }
    tool_update(tool=tool, secret_headers={"X-Api-Key": None})
    definition = registry_snapshot.get(recheck=True).tools["t.secret"]
    assert definition.secret_headers == {"Authorization": "Bearer abc"}
    assert "Bearer abc" not in json.dumps(definition.public())
    assert Tool.objects.get(pk=tool.pk).version == 3


@pytest.mark.parametrize(
    "headers",
    [{"Bad Header": "x"}, {"Content-Type": "x"}, {"X-Key": 5}, {"X-Key": "a\nb"}, {"Host": "evil"}],
)
def test_bad_secret_headers_are_refused(make_tool, headers):
    with pytest.raises(ValidationFailed) as exc:
        make_tool("t.badsecret", secret_headers=headers)
    assert "secret_headers" in exc.value.by_path()


def test_registry_sees_changes_and_deletes(make_tool):
    tool = make_tool("t.live")
    assert registry_snapshot.get(recheck=True).tools["t.live"].version == 1
    tool_update(tool=tool, enabled=False)
    assert registry_snapshot.get(recheck=True).tools["t.live"].enabled is False
    tool_delete(tool=tool)
    assert "t.live" not in registry_snapshot.get(recheck=True).tools


def test_function_names_are_valid_unique_and_reversible():
    ids = ["projects.list", "projects__list", "a-b_c", "x" * 128, "y." * 40 + "z"]
    names = function_names_for(ids)
    assert names["projects.list"] != names["projects__list"]
    assert names["a-b_c"] == "a-b_c"
    assert len(set(names.values())) == len(ids)
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names.values())
    # Stable: the same id gets the same name whatever else is in the registry.
    assert function_names_for(["projects.list", "other"])["projects.list"] == "projects__list"


def test_tool_create_requires_object_input_schema_even_when_missing(db):
    with pytest.raises(ValidationFailed) as exc:
        tool_create(tool_id="t.noschema", name="x", executor="http", target="http://127.0.0.1/x", input_schema={})
    assert "input_schema" in exc.value.by_path()


def test_unknown_field_is_refused(make_tool):
    with pytest.raises(ValidationFailed) as exc:
        make_tool("t.unknown", colour="blue")
    assert "colour" in exc.value.by_path()


def test_schema_with_object_shape_is_kept_verbatim(make_tool):
    tool = make_tool("t.verbatim", input_schema=OBJECT_SCHEMA)
    assert Tool.objects.get(pk=tool.pk).input_schema == OBJECT_SCHEMA
