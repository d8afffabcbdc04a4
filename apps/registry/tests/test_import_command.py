"""`manage.py import_registry` runs the registry engine and prints the same plan as the API."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.agents.models import Agent, AgentSecret
from apps.llm.models import LogicalModel, Provider
from apps.registry.documents import registry_apply, registry_export
from apps.registry.tests.conftest import OBJECT_SCHEMA
from apps.tools.models import Tool
from apps.access.models import ChangeRecord

pytestmark = pytest.mark.django_db

DOCUMENT = {
    "providers": {"stub": {"kind": "stub"}},
    "models": {"dagi-stub": {"provider": "stub", "name": "dagi-stub"}, "old": {"provider": "stub", "name": "old"}},
    "tools": [
        {
            "id": "projects.list",
            "name": "Projects",
            "input_schema": OBJECT_SCHEMA,
            "executor": "http",
            "target": "http://svc:8000/projects",
            "secrets": {"X-Key": {"env": "PROJECTS_KEY"}},
        }
    ],
    "agents": [
        {
            "id": "agent:sofia",
            "name": "Sofia",
            "microdao_id": "microdao:7",
            "model": "dagi-stub",
            "secrets": {"OPENAI_API_KEY": {"env": "SOFIA_OPENAI_KEY"}},
        }
    ],
}


def _import(document: dict, *args: str) -> list[str]:
    out = io.StringIO()
    call_command("import_registry", "-", *args, stdin=io.StringIO(yaml.safe_dump(document)), stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("PROJECTS_KEY", "projects-key-from-env")
    monkeypatch.setenv("SOFIA_OPENAI_KEY", "sofia-key-from-env")


def test_the_command_prints_the_engines_plan(secrets_env):
    dry = _import(DOCUMENT, "--dry-run")
    assert dry == registry_apply(document=DOCUMENT, dry_run=True, resolve_env=True).lines()
    assert dry[-1] == "dry run: 5 would be created, 0 would be updated, 0 unchanged, 0 would be deleted"
    assert not Provider.objects.exists() and not Tool.objects.exists() and not Agent.objects.exists()

    assert _import(DOCUMENT)[-1] == "5 created, 0 updated, 0 unchanged, 0 deleted"
    # Environment references are resolved by the command (the operator's own environment).
    assert "projects-key-from-env" in Tool.objects.get().secret_headers
    assert AgentSecret.objects.get().value == "sofia-key-from-env"
    assert set(ChangeRecord.objects.values_list("source", flat=True)) == {"import"}
    assert _import(DOCUMENT) == ["0 created, 0 updated, 5 unchanged, 0 deleted"]
    # And what it wrote exports back to a document that imports as a no-op.
    assert _import(registry_export())[-1] == "0 created, 0 updated, 5 unchanged, 0 deleted"


def test_prune_only_when_asked(secrets_env):
    _import(DOCUMENT)
    smaller = {**DOCUMENT, "models": {"dagi-stub": DOCUMENT["models"]["dagi-stub"]}}
    assert _import(smaller)[-1] == "0 created, 0 updated, 4 unchanged, 0 deleted"
    assert LogicalModel.objects.filter(name="old").exists()
    assert _import(smaller, "--prune") == ["deleted: models.old", "0 created, 0 updated, 4 unchanged, 1 deleted"]


def test_errors_name_the_path_and_nothing_is_written(monkeypatch):
    monkeypatch.delenv("PROJECTS_KEY", raising=False)
    monkeypatch.setenv("SOFIA_OPENAI_KEY", "sofia-key-from-env")  # the agents, applied first, pass
    with pytest.raises(CommandError, match=r"tools\[0\]\.secrets\.X-Key: environment variable PROJECTS_KEY is not set"):
        _import(DOCUMENT)
    assert not Provider.objects.exists()


def test_a_tool_may_allow_an_agent_of_the_same_file_and_a_typo_is_refused(secrets_env):
    document = {**DOCUMENT, "tools": [{**DOCUMENT["tools"][0], "allowed_agents": ["agent:sofia"]}]}
    assert _import(document)[-1] == "5 created, 0 updated, 0 unchanged, 0 deleted"
    assert Tool.objects.get().allowed_agents == ["agent:sofia"]

    typo = {**DOCUMENT, "tools": [{**DOCUMENT["tools"][0], "allowed_agents": ["agent:sofia", "agent:sofiaa"]}]}
    expected = (
        "tools[0].allowed_agents: no agent 'agent:sofiaa' in the registry (create the agent first, "
        "or list it under agents: in the same registry document)"
    )
    records = ChangeRecord.objects.count()
    for args in (("--dry-run",), ()):
        with pytest.raises(CommandError) as raised:
            _import(typo, *args)
        assert expected in str(raised.value)
    assert Tool.objects.get().allowed_agents == ["agent:sofia"] and ChangeRecord.objects.count() == records
