"""What operators see of the proxy's health and spend: deployment cooldowns and error rates
on providers and models, a policy's spend so far next to its budget, calls and spend per
service token (usage records carry the token's id), and the admin's metrics page."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.llm import services
from apps.llm.models import UsageRecord
from apps.llm.router import health, health_subject
from apps.llm.tests.conftest import usage_rows
from daarion.observability.metrics import exposition
from apps.access.services import service_token_create


def _record(**fields) -> UsageRecord:
    defaults = {"logical_model": "obs-model", "provider": "obs-provider", "status": "ok", "cost": Decimal("0")}
    return UsageRecord.objects.create(**{**defaults, **fields})


@pytest.mark.django_db
def test_providers_and_models_show_cooldowns_error_rates_and_the_last_error(admin_client, settings):
    provider = services.provider_create(name="obs-provider", kind="stub")
    model = services.logical_model_create(name="obs-model")
    deployment = services.deployment_create(logical_model=model, provider=provider, upstream_model="obs")
    _record()
    _record(status="error", error_type="upstream_timeout")
    settings.LLM_COOLDOWN_FAILURES = 2

    async def fail_twice() -> None:
        for _ in range(2):
            await health.failed(health_subject(deployment.id))

    asyncio.run(fail_twice())  # what the router records when the deployment keeps failing
    for page in ("/admin/llm/provider/", "/admin/llm/logicalmodel/", f"/admin/llm/provider/{provider.pk}/change/"):
        html = admin_client.get(page).content.decode()
        assert "1 deployment(s) cooling down until" in html, page
        assert "1/2 calls failed (50%)" in html and "last error upstream_timeout" in html, page
    # The same cooldown as a scrape-time gauge of /metrics.
    samples = {
        (s.name, s.labels.get("model"), s.labels.get("provider")): s.value
        for family in text_string_to_metric_families(exposition().decode())
        for s in family.samples
    }
    assert samples[("daarion_llm_deployment_cooling_down", "obs-model", "obs-provider")] == 1


@pytest.mark.django_db
def test_a_policy_shows_its_spend_so_far_next_to_its_budget(admin_client, make_agents):
    make_agents("agent:obs-spender")
    policy = services.rate_limit_policy_create(
        scope="agent", subject="agent:obs-spender", rpm=100, budget_usd="2", budget_period="day"
    )
    _record(agent_id="agent:obs-spender", cost=Decimal("0.25"))
    _record(agent_id="agent:obs-spender", cost=Decimal("0.25"))
    _record(agent_id="agent:someone-else", cost=Decimal("5"))
    listing = admin_client.get("/admin/llm/ratelimitpolicy/").content.decode()
    assert "0.5 this day of 2 (25%)" in listing
    change = admin_client.get(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/").content.decode()
    assert "0.5 this day of 2 (25%)" in change


@pytest.mark.django_db
def test_service_tokens_show_their_calls_and_spend(admin_client):
    token = service_token_create(name="obs-runtime", scopes=["llm"]).token
    idle = service_token_create(name="obs-idle", scopes=["llm"]).token
    _record(token_id=token.pk, cost=Decimal("0.5"))
    _record(token_id=token.pk, cost=Decimal("0.25"))
    listing = admin_client.get("/admin/daarion/servicetoken/").content.decode()
    assert "2 calls, 0.75 USD" in listing
    assert "no calls" in admin_client.get(f"/admin/daarion/servicetoken/{idle.pk}/change/").content.decode()


def test_a_usage_record_carries_the_calling_token(api, stub_model, live, make_token, bearer):
    raw = make_token(scopes=["llm"], name="obs-caller")
    live()
    response = api.post(
        "/v1/chat/completions",
        headers={**bearer(raw), "x-request-id": "req-obs-token"},
        json={"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    from apps.access.models import ServiceToken

    [row] = usage_rows(request_id="req-obs-token")
    assert row.token_id == ServiceToken.objects.get(name="obs-caller").pk


@pytest.mark.django_db
def test_the_metrics_page_links_the_dashboard_and_shows_totals(admin_client, client, settings):
    settings.GRAFANA_DASHBOARD_URL = "http://grafana.example/d/daarion"
    page = admin_client.get("/admin/metrics/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="http://grafana.example/d/daarion"' in html and "LLM calls by status" in html
    assert client.get("/admin/metrics/").status_code == 302  # staff only
