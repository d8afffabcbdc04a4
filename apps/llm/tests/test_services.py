"""Registry services: validation rules, fallbacks without loops, version bumps."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.llm import services
from apps.llm.models import Provider
from apps.llm.selectors import load_registry, registry_snapshot
from daarion.infra.errors import Conflict, ValidationFailed
from daarion.infra.redis_client import get_redis, key

pytestmark = pytest.mark.django_db


def test_provider_defaults_base_url_for_known_kinds():
    provider = services.provider_create(name="openai", kind="openai", api_key_env="OPENAI_API_KEY")
    assert provider.base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "vllm"}, "base_url"),  # no default URL for a self-hosted kind
        ({"kind": "vllm", "base_url": "ftp://x"}, "base_url"),
        ({"kind": "vllm", "base_url": "not a url"}, "base_url"),
        ({"kind": "stub", "api_key_env": "BAD-NAME"}, "api_key_env"),
        ({"kind": "stub", "extra_headers": {"Bad Header": "x"}}, "extra_headers"),
        ({"kind": "stub", "extra_headers": {"X-Ok": 5}}, "extra_headers"),
        ({"kind": "stub", "timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_provider_rules(fields, field_name):
    with pytest.raises(ValidationFailed) as info:
        services.provider_create(name="p1", **fields)
    assert field_name in info.value.by_path()


def test_provider_name_rule_and_uniqueness():
    services.provider_create(name="stub", kind="stub")
    with pytest.raises(ValidationFailed) as info:
        services.provider_create(name="stub", kind="stub")
    assert "name" in info.value.by_path()
    with pytest.raises(ValidationFailed):
        services.provider_create(name="has space", kind="stub")


def test_provider_key_is_encrypted_at_rest_and_kept_on_update():
    provider = services.provider_create(name="oa", kind="openai", api_key="sk-live-secret-123456")
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM llm_provider WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]
    assert "sk-live-secret" not in stored and stored.startswith("enc:v1:")
    services.provider_update(provider=provider, timeout_seconds=5)  # api_key=None keeps it
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-live-secret-123456"
    services.provider_update(provider=provider, api_key="")
    assert Provider.objects.get(pk=provider.pk).api_key == ""


def test_api_key_env_is_resolved_in_the_snapshot(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-from-env")
    provider = services.provider_create(name="oa", kind="openai", api_key_env="TEST_LLM_KEY")
    model = services.logical_model_create(name="m")
    services.deployment_create(logical_model=model, provider=provider, upstream_model="gpt")
    assert load_registry().models["m"].deployments[0].provider.api_key == "sk-from-env"


def _models(*names: str) -> None:
    for name in names:
        services.logical_model_create(name=name)


def test_fallbacks_must_exist_and_not_loop():
    _models("a", "b", "c")
    services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks=["b"])
    services.logical_model_update(model=services.LogicalModel.objects.get(name="b"), fallbacks=["c"])
    with pytest.raises(ValidationFailed) as info:
        services.logical_model_update(model=services.LogicalModel.objects.get(name="c"), fallbacks=["a"])
    assert "loop" in info.value.by_path()["fallbacks"][0]
    assert "c → a → b → c" in info.value.by_path()["fallbacks"][0]
    with pytest.raises(ValidationFailed, match="itself"):
        services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks=["a"])
    with pytest.raises(ValidationFailed, match="unknown"):
        services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks=["zzz"])
    with pytest.raises(ValidationFailed, match="twice"):
        services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks=["b", "b"])
    with pytest.raises(ValidationFailed, match="list"):
        services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks="b")


def test_model_used_as_fallback_cannot_be_deleted():
    _models("a", "b")
    services.logical_model_update(model=services.LogicalModel.objects.get(name="a"), fallbacks=["b"])
    with pytest.raises(Conflict):
        services.logical_model_delete(model=services.LogicalModel.objects.get(name="b"))


def test_provider_with_deployments_cannot_be_deleted():
    provider = services.provider_create(name="stub", kind="stub")
    model = services.logical_model_create(name="m")
    services.deployment_create(logical_model=model, provider=provider, upstream_model="x")
    with pytest.raises(Conflict) as info:
        services.provider_delete(provider=provider)
    assert info.value.details == {"models": ["m"]}


def test_negative_price_is_refused():
    with pytest.raises(ValidationFailed) as info:
        services.logical_model_create(name="m", input_price_per_mtok=-1)
    assert "input_price_per_mtok" in info.value.by_path()
    with pytest.raises(ValidationFailed):
        services.logical_model_create(name="m", output_price_per_mtok="cheap")


@pytest.mark.parametrize(
    ("scope", "subject", "limits", "field_name"),
    [
        ("default", "agent:x", {"rpm": 1}, "subject"),
        ("agent", "", {"rpm": 1}, "subject"),
        ("agent", "agent:x", {"rpm": 0}, "rpm"),
        ("bogus", "x", {"rpm": 1}, "scope"),
    ],
)
def test_rate_limit_policy_rules(scope, subject, limits, field_name):
    with pytest.raises(ValidationFailed) as info:
        services.rate_limit_policy_create(scope=scope, subject=subject, **limits)
    assert field_name in info.value.by_path()


def test_writes_bump_the_registry_version(django_capture_on_commit_callbacks):
    version_key = key("config-version", services.REGISTRY_CONFIG)
    with django_capture_on_commit_callbacks(execute=True):
        services.provider_create(name="stub", kind="stub")
    first = get_redis().get(version_key)
    assert first
    with django_capture_on_commit_callbacks(execute=True):
        services.logical_model_create(name="m")
    assert get_redis().get(version_key) != first
    assert "m" in registry_snapshot.get().models


def test_a_deployment_update_writes_and_bumps_only_on_a_change(django_capture_on_commit_callbacks):
    provider = services.provider_create(name="stub", kind="stub")
    model = services.logical_model_create(name="m")
    deployment = services.deployment_create(logical_model=model, provider=provider, upstream_model="echo")
    version_key = key("config-version", services.REGISTRY_CONFIG)
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_update(deployment=deployment, weight=1, enabled=True)  # as stored
    before = get_redis().get(version_key)
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_update(deployment=deployment, weight=1)
    assert get_redis().get(version_key) == before
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_update(deployment=deployment, rpm_limit=5)
    assert get_redis().get(version_key) != before
    assert load_registry().models["m"].deployments[0].rpm_limit == 5


def test_a_deployment_update_refuses_its_logical_model_and_bad_values():
    provider = services.provider_create(name="stub", kind="stub")
    model = services.logical_model_create(name="m")
    other = services.logical_model_create(name="n")
    deployment = services.deployment_create(logical_model=model, provider=provider, upstream_model="echo")
    with pytest.raises(ValidationFailed) as info:
        services.deployment_update(deployment=deployment, logical_model=other)
    assert [d["path"] for d in info.value.details] == ["logical_model"]
    with pytest.raises(ValidationFailed) as info:
        services.deployment_update(deployment=deployment, weight=-1)
    assert "weight" in info.value.by_path()
    deployment.refresh_from_db()
    assert deployment.logical_model_id == model.pk and deployment.weight == 1
