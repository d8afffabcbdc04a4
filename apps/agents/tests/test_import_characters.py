"""manage.py import_characters: files, folders, dry runs, and one error per bad file."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.agents.models import Agent

pytestmark = pytest.mark.django_db


def _write(path, document) -> None:
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")


def _run(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("import_characters", *map(str, args), stdout=out, stderr=err)
        failed = None
    except CommandError as exc:
        failed = exc
    return out.getvalue(), err.getvalue(), failed


def test_folder_imports_good_files_and_reports_each_bad_one(tmp_path):
    _write(tmp_path / "a.json", {"name": "Alpha", "settings": {"secrets": {"KEY": "v"}}})
    _write(tmp_path / "b.json", {"name": "Beta", "lore": "not a list"})
    _write(tmp_path / "c.json", "{not json")
    _write(tmp_path / "d.json", {"name": "Delta"})
    (tmp_path / "notes.txt").write_text("ignored")
    out, err, failed = _run(tmp_path, "--microdao", "microdao:7", "--model", "test-model")
    assert "created agent:alpha, secrets: KEY" in out
    assert "created agent:delta" in out
    assert "2 imported, 2 failed" in out
    assert "b.json: error: lore:" in err
    assert "c.json: error: not valid JSON (line 1" in err
    assert err.count("error:") == 2
    assert failed is not None
    assert sorted(Agent.objects.values_list("id", flat=True)) == ["agent:alpha", "agent:delta"]
    assert Agent.objects.get(pk="agent:alpha").secrets.get().value == "v"


def test_reimport_reports_unchanged(tmp_path):
    _write(tmp_path / "a.json", {"name": "Alpha"})
    _run(tmp_path / "a.json", "--microdao", "m:1", "--model", "x")
    out, err, failed = _run(tmp_path / "a.json")
    assert "unchanged agent:alpha" in out and failed is None


def test_dry_run_writes_nothing(tmp_path):
    _write(tmp_path / "a.json", {"name": "Alpha", "settings": {"model": "x", "microdao_id": "m"}})
    out, err, failed = _run(tmp_path, "--dry-run")
    assert "would create agent:alpha" in out and "dry run" in out
    assert failed is None and not Agent.objects.exists()


def test_missing_path_and_empty_folder_are_errors(tmp_path):
    _, _, failed = _run(tmp_path / "nope.json")
    assert "no such file" in str(failed)
    _, _, failed = _run(tmp_path)
    assert "no .json files" in str(failed)


def test_missing_model_for_a_new_agent_is_explained(tmp_path):
    _write(tmp_path / "a.json", {"name": "Alpha"})
    out, err, failed = _run(tmp_path / "a.json", "--microdao", "m")
    assert "settings.model: required for a new agent" in err and failed is not None
