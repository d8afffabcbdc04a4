"""Admin: provider keys are write-only and masked; saves go through the services' rules;
the usage changelist shows per-day totals."""

from __future__ import annotations

import pytest

from apps.llm import services, usage
from apps.llm.models import LogicalModel, Provider

pytestmark = pytest.mark.django_db


def _provider_form(**overrides) -> dict:
    data = {
        "name": "oa",
        "kind": "openai",
        "base_url": "",
        "new_api_key": "sk-admin-secret-7777",
        "api_key_env": "",
        "timeout_seconds": "30",
        "max_retries": "2",
        "extra_headers": "{}",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_provider_key_is_write_only_and_masked(admin_client):
    response = admin_client.post("/admin/llm/provider/add/", _provider_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="oa")
    assert provider.api_key == "sk-admin-secret-7777"
    assert provider.base_url == "https://api.openai.com/v1", "the service's defaults applied"
    change = admin_client.get(f"/admin/llm/provider/{provider.pk}/change/").content.decode()
    assert "sk-admin-secret" not in change
    listing = admin_client.get("/admin/llm/provider/").content.decode()
    assert "sk-admin-secret" not in listing and "••••7777" in listing
    # Saving with an empty key keeps the stored one; "clear" removes it.
    data = _provider_form(new_api_key="", timeout_seconds="12")
    data.pop("name")
    assert admin_client.post(f"/admin/llm/provider/{provider.pk}/change/", data).status_code == 302
    provider.refresh_from_db()
    assert (provider.api_key, provider.timeout_seconds) == ("sk-admin-secret-7777", 12)
    data["clear_api_key"] = "on"
    admin_client.post(f"/admin/llm/provider/{provider.pk}/change/", data)
    provider.refresh_from_db()
    assert provider.api_key == ""


def test_provider_rules_show_as_form_errors(admin_client):
    response = admin_client.post("/admin/llm/provider/add/", _provider_form(kind="vllm", base_url="ftp://nowhere"))
    assert response.status_code == 200
    assert "is not an http(s) URL" in response.content.decode()
    assert not Provider.objects.exists()


def _model_form(name: str, fallbacks: str = "") -> dict:
    return {
        "name": name,
        "description": "",
        "fallbacks": fallbacks,
        "context_window": "8192",
        "input_price_per_mtok": "0",
        "output_price_per_mtok": "0",
        "enabled": "on",
        "deployments-TOTAL_FORMS": "0",
        "deployments-INITIAL_FORMS": "0",
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "1000",
    }


def test_model_admin_refuses_looping_fallbacks(admin_client):
    services.logical_model_create(name="a")
    services.logical_model_create(name="b", fallbacks=["a"])
    a = LogicalModel.objects.get(name="a")
    data = _model_form("a", "b")
    data.pop("name")
    response = admin_client.post(f"/admin/llm/logicalmodel/{a.pk}/change/", data)
    assert response.status_code == 200
    assert "fallbacks would loop" in response.content.decode()
    assert LogicalModel.objects.get(name="a").fallbacks == []


def test_model_admin_saves_deployments_through_services(admin_client):
    stub = services.provider_create(name="stub", kind="stub")
    data = _model_form("new-model")
    data.update(
        {
            "deployments-TOTAL_FORMS": "1",
            "deployments-0-provider": str(stub.pk),
            "deployments-0-upstream_model": "x",
            "deployments-0-weight": "2",
            "deployments-0-enabled": "on",
        }
    )
    response = admin_client.post("/admin/llm/logicalmodel/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    model = LogicalModel.objects.get(name="new-model")
    assert [(d.upstream_model, d.weight) for d in model.deployments.all()] == [("x", 2)]


def test_model_admin_edits_deleted_and_added_rows_go_through_the_one_sync(admin_client):
    stub = services.provider_create(name="stub", kind="stub")
    model = services.logical_model_create(name="m")
    services.logical_model_deployments_sync(
        model=model, deployments=[{"provider": "stub", "upstream_model": name} for name in ("keep", "edit", "gone")]
    )
    rows = {d.upstream_model: d for d in model.deployments.all()}
    data = _model_form("m")
    data.pop("name")
    data.update({"deployments-TOTAL_FORMS": "4", "deployments-INITIAL_FORMS": "3"})
    for index, (name, upstream, extra) in enumerate(
        [
            ("keep", "keep", {}),
            ("edit", "edited", {"weight": "5"}),
            ("gone", "gone", {"DELETE": "on"}),
        ]
    ):
        data.update(
            {
                f"deployments-{index}-id": str(rows[name].pk),
                f"deployments-{index}-logical_model": str(model.pk),
                f"deployments-{index}-provider": str(stub.pk),
                f"deployments-{index}-upstream_model": upstream,
                f"deployments-{index}-weight": "1",
                f"deployments-{index}-enabled": "on",
                **{f"deployments-{index}-{k}": v for k, v in extra.items()},
            }
        )
    data.update(
        {
            "deployments-3-provider": str(stub.pk),
            "deployments-3-upstream_model": "new",
            "deployments-3-weight": "1",
            "deployments-3-enabled": "on",
        }
    )
    response = admin_client.post(f"/admin/llm/logicalmodel/{model.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    after = {d.upstream_model: d for d in model.deployments.all()}
    assert sorted((n, d.weight) for n, d in after.items()) == [("edited", 5), ("keep", 1), ("new", 1)]
    # An edited row keeps its id (its cooldowns and usage stay with it).
    assert (after["keep"].pk, after["edited"].pk) == (rows["keep"].pk, rows["edit"].pk)


@pytest.mark.django_db(transaction=True)
def test_usage_changelist_shows_totals(admin_client):
    for agent in ("agent:sofia", "agent:sofia", "agent:pm"):
        usage.emit(
            usage.new_record(
                request_id=f"req-{agent}",
                agent_id=agent,
                logical_model="dagi-stub",
                status="ok",
                prompt_tokens=2,
                completion_tokens=3,
                total_tokens=5,
                cost="0.001",
            )
        )
    usage.push_pending()
    usage.drain_to_database()
    page = admin_client.get("/admin/llm/usagerecord/").content.decode()
    assert "3 calls · 0 errors · 15 tokens" in page
    assert "Per day and agent" in page and "agent:pm" in page
    assert admin_client.get("/admin/llm/usagerecord/?agent_id=agent:pm").status_code == 200
