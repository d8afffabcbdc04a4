"""import_registry / export_registry on the LLM sections (the seed's config.yaml shape), and
the demo registry."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.llm.models import Deployment, LogicalModel, Provider
from apps.demo import registry as demo

pytestmark = pytest.mark.django_db

SEED_CONFIG = """
providers:
  openai:
    base_url: "https://api.openai.com/v1"
    api_key_env: "OPENAI_API_KEY"
  deepseek:
    base_url: "https://api.deepseek.com/v1"
    api_key_env: "DEEPSEEK_API_KEY"
  local:
    base_url: "http://local-llm:8000"
models:
  gpt-4.1-mini:
    provider: "openai"
    name: "gpt-4.1-mini"
  deepseek-r1:
    provider: "deepseek"
    name: "deepseek-r1"
  dagi-local-8b:
    provider: "local"
    name: "qwen2.5-8b-instruct"
"""


def _import(text: str, *args: str) -> str:
    out = io.StringIO()
    call_command("import_registry", "-", *args, stdin=io.StringIO(text), stdout=out)
    return out.getvalue()


def test_import_reads_the_seed_config_and_is_idempotent():
    output = _import(SEED_CONFIG)
    assert "6 created" in output
    assert Provider.objects.get(name="local").kind == "openai_compatible"
    assert Provider.objects.get(name="openai").kind == "openai"
    deployment = Deployment.objects.get(logical_model__name="dagi-local-8b")
    assert (deployment.provider.name, deployment.upstream_model) == ("local", "qwen2.5-8b-instruct")
    again = _import(SEED_CONFIG)
    assert "0 created, 0 updated, 6 unchanged" in again


def test_dry_run_writes_nothing():
    output = _import(SEED_CONFIG, "--dry-run")
    assert "dry run" in output and "would be created: models.gpt-4.1-mini" in output
    assert not Provider.objects.exists() and not LogicalModel.objects.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:\n  m:\n    provider: nope\n    name: x\n", "models.m.provider: unknown provider 'nope'"),
        ("providers:\n  p:\n    base_url: 'ftp://x'\n", "providers.p.base_url"),
        ("providers:\n  p:\n    colour: red\n", "providers.p: unknown key(s) ['colour']"),
        ("models:\n  m: {}\n", "models.m: needs a provider"),
        ("models: [1, 2]\n", "models: expected a mapping"),
        ("providers:\n  p: {kind: stub, timeout: soon}\n", "providers.p.timeout: must be a number"),
        (
            "providers: {s: {kind: stub}}\nmodels:\n  m: {provider: s, context_window: big}\n",
            "models.m.context_window: must be an integer",
        ),
        ("providers: {s: {kind: stub}}\nmodels:\n  m: {provider: s, weight: heavy}\n", "models.m.weight: must be an integer"),
        ("stuff: 1\n", "(root): unknown key(s) ['stuff']"),
        (
            "providers:\n  s: {kind: stub}\nmodels:\n  a: {provider: s, fallbacks: [b]}\n  b: {provider: s, fallbacks: [a]}\n",
            "fallbacks would loop",
        ),
        (
            "providers: {s: {kind: stub}}\nmodels:\n  a: {provider: s, fallbacks: [zz]}\n",
            "models.a.fallbacks: unknown logical model(s): zz",
        ),
    ],
)
def test_import_errors_name_the_key_and_problem(text, expected):
    with pytest.raises(CommandError) as info:
        _import(text)
    assert expected in str(info.value)
    assert not LogicalModel.objects.exists(), "a failed import writes nothing"


def test_invalid_yaml_and_missing_file():
    with pytest.raises(CommandError, match="not valid YAML"):
        _import("providers: [unclosed")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_registry", "/nonexistent/config.yaml")


def test_export_round_trips_through_import(make_agents):
    make_agents("agent:sofia")  # the agent policy below limits it; the export carries it under agents:
    rich = (
        SEED_CONFIG
        + """
  mixed:
    deployments:
      - {provider: openai, name: gpt-4.1-mini, weight: 3, rpm: 100}
      - {provider: deepseek, name: deepseek-chat}
    fallbacks: [gpt-4.1-mini]
    price: {input: 0.4, output: 1.6}
rate_limits:
  - {scope: default, rpm: 60}
  - {scope: agent, subject: "agent:sofia", rpm: 10, tpm: 1000, max_concurrent: 2}
"""
    )
    _import(rich)
    out = io.StringIO()
    call_command("export_registry", stdout=out)
    exported = yaml.safe_load(out.getvalue())
    assert exported["models"]["mixed"]["deployments"][0] == {
        "provider": "openai",
        "name": "gpt-4.1-mini",
        "weight": 3,
        "rpm": 100,
    }
    assert exported["models"]["dagi-local-8b"] == {"provider": "local", "name": "qwen2.5-8b-instruct", "context_window": 8192}
    assert exported["providers"]["openai"]["api_key_env"] == "OPENAI_API_KEY"
    assert len(exported["rate_limits"]) == 2
    # Importing the export changes nothing.
    assert _import(out.getvalue()).startswith("0 created, 0 updated")


def test_export_never_writes_a_stored_key():
    _import("providers:\n  oa:\n    kind: openai\n    api_key: sk-top-secret-999\n")
    out = io.StringIO()
    call_command("export_registry", stdout=out)
    assert "sk-top-secret" not in out.getvalue()
    assert Provider.objects.get(name="oa").api_key == "sk-top-secret-999"


def test_import_replaces_a_models_deployments():
    _import(SEED_CONFIG)
    _import(SEED_CONFIG.replace('name: "qwen2.5-8b-instruct"', 'name: "llama3-8b"'))
    assert list(Deployment.objects.filter(logical_model__name="dagi-local-8b").values_list("upstream_model", flat=True)) == [
        "llama3-8b"
    ]


def test_demo_seed_is_idempotent():
    first = demo.seed()
    assert "created" in first[0]
    assert {"gpt-4.1-mini", "deepseek-r1", "dagi-local-8b", "dagi-stub"} <= set(
        LogicalModel.objects.values_list("name", flat=True)
    )
    second = demo.seed()
    assert "0 created, 0 updated" in second[0]
