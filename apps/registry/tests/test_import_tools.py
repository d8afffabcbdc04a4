"""manage.py import_tools / export_tools: the `tools:` section through the registry engine;
idempotent, dry-run, precise errors, round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.tools.models import Tool
from daarion.infra.yaml_documents import yaml_document_dump

pytestmark = pytest.mark.django_db(transaction=True)

SEED_YAML = """
tools:
  - id: "projects.list"
    name: "List projects"
    description: "Повертає список проєктів microDAO."
    input_schema:
      type: "object"
      properties:
        microdao_id: { type: "string" }
      required: ["microdao_id"]
    output_schema:
      type: "array"
      items: { type: "object" }
    executor: "http"
    target: "http://projects-service:8000/internal/tools/projects.list"
    allowed_agents: ["agent:sofia", "agent:pm", "agent:cto"]
"""


@pytest.fixture(autouse=True)
def _seed_agents(make_agents) -> None:
    make_agents("agent:sofia", "agent:pm", "agent:cto")  # the agents the seed's file allows


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_seed_config_imports_and_is_idempotent(tmp_path):
    path = _write(tmp_path, SEED_YAML)
    assert "1 created, 0 updated, 0 unchanged" in _run("import_tools", path)
    tool = Tool.objects.get(tool_id="projects.list")
    assert tool.allowed_agents == ["agent:cto", "agent:pm", "agent:sofia"]
    assert tool.output_schema == {"type": "array", "items": {"type": "object"}}
    assert "0 created, 0 updated, 1 unchanged" in _run("import_tools", path)
    assert Tool.objects.get(tool_id="projects.list").version == 1
    changed = SEED_YAML.replace('name: "List projects"', 'name: "List all projects"')
    assert "0 created, 1 updated" in _run("import_tools", _write(tmp_path, changed))
    assert Tool.objects.get(tool_id="projects.list").version == 2


def test_dry_run_changes_nothing(tmp_path):
    out = _run("import_tools", _write(tmp_path, SEED_YAML), "--dry-run")
    assert "dry run: 1 would be created" in out
    assert not Tool.objects.exists()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["tools"][0].update(input_schema={"type": "objekt"}), "tools[0].input_schema: not a valid JSON Schema"),
        (lambda d: d["tools"][0].update(executor="shell"), "tools[0].executor: Value 'shell' is not a valid choice"),
        (lambda d: d["tools"][0].update(colour="red"), "tools[0]: unknown key(s) ['colour']"),
        (lambda d: d["tools"][0].pop("id"), "tools[0].id: required"),
        (lambda d: d["tools"].append(dict(d["tools"][0])), "tools[2].id: 'projects.list' appears twice"),
        (
            lambda d: d["tools"][0].update(allowed_agents="agent:pm"),
            "tools[0].allowed_agents: must be null (every agent) or a list",
        ),
        (
            lambda d: d["tools"][1].update(allowed_agents=["agent:pm", "agent:pmm"]),
            "tools[1].allowed_agents: no agent 'agent:pmm' in the registry (create the agent first",
        ),
        (lambda d: d["tools"][0].update(secrets={"X-Key": {"env": "NOPE_NOT_SET_VAR"}}), "NOPE_NOT_SET_VAR is not set"),
        (lambda d: d.update(tools="nope"), "top-level `tools:` list"),
    ],
)
def test_errors_name_the_tool_and_field_and_nothing_is_written(tmp_path, mutate, expected):
    document = yaml.safe_load(SEED_YAML)
    document["tools"].append({**document["tools"][0], "id": "projects.ok"})
    mutate(document)
    with pytest.raises(CommandError) as exc:
        _run("import_tools", _write(tmp_path, yaml_document_dump(document)))
    assert expected in str(exc.value)
    assert not Tool.objects.exists()  # all or nothing: the valid item was not kept either


def test_an_unknown_agent_fails_the_dry_run_too(tmp_path):
    path = _write(tmp_path, SEED_YAML.replace('"agent:cto"', '"agent:ctoo"'))
    for args in (("--dry-run",), ()):
        with pytest.raises(CommandError) as exc:
            _run("import_tools", path, *args)
        assert "tools[0].allowed_agents: no agent 'agent:ctoo' in the registry" in str(exc.value)
        assert "'agent:cto'" not in str(exc.value)
    assert not Tool.objects.exists()


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(CommandError, match="not valid YAML"):
        _run("import_tools", _write(tmp_path, "tools: [unclosed"))
    with pytest.raises(CommandError, match="No such file"):
        _run("import_tools", str(tmp_path / "missing.yaml"))


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECTS_KEY", "k-123456789")
    document = yaml.safe_load(SEED_YAML)
    document["tools"][0]["secrets"] = {"X-Api-Key": {"env": "PROJECTS_KEY"}}
    _run("import_tools", _write(tmp_path, yaml_document_dump(document)))
    assert json.loads(Tool.objects.get().secret_headers) == {"X-Api-Key": "k-123456789"}


def test_export_round_trips(tmp_path):
    _run("import_tools", _write(tmp_path, SEED_YAML))
    exported = _run("export_tools")
    assert "projects.list" in exported
    assert "0 created, 0 updated, 1 unchanged" in _run("import_tools", _write(tmp_path, exported))


def test_export_to_a_file_names_secret_variables_not_values(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECTS_KEY", "k-123456789")
    document = yaml.safe_load(SEED_YAML)
    document["tools"][0]["secrets"] = {"X-Api-Key": {"env": "PROJECTS_KEY"}}
    _run("import_tools", _write(tmp_path, yaml_document_dump(document)))
    target = tmp_path / "out.yaml"
    call_command("export_tools", "-o", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    text = target.read_text()
    assert "k-123456789" not in text
    exported = yaml.safe_load(text)["tools"][0]
    assert exported["secrets"] == {"X-Api-Key": {"env": "TOOL_SECRET_PROJECTS_LIST_X_API_KEY"}}
