"""The admin usage dashboard: staff see the page and its JSON, others go to the login page,
and the usage changelist links to it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from apps.llm.models import UsageRecord

URL = "/admin/llm/usagerecord/dashboard/"


@pytest.fixture
def usage(db) -> None:
    now = timezone.now()
    rows = [
        ("agent:sofia", "gpt-4.1-mini", "ok", 30, "0.002", 120.0, now),
        ("agent:sofia", "gpt-4.1-mini", "ok", 10, "0.001", 80.0, now),
        ("agent:helix", "deepseek-r1", "error", 0, "0", 40.0, now),
        ("agent:sofia", "deepseek-r1", "ok", 5, "0.0005", 60.0, now - timedelta(days=1)),
        ("agent:old", "gpt-4.1-mini", "ok", 99, "9", 1.0, now - timedelta(days=40)),
    ]
    for agent, model, status, tokens, cost, latency, when in rows:
        UsageRecord.objects.create(
            agent_id=agent,
            logical_model=model,
            status=status,
            total_tokens=tokens,
            prompt_tokens=tokens,
            cost=Decimal(cost),
            latency_ms=latency,
            created_at=when,
        )


def test_url_name_resolves() -> None:
    assert reverse("admin:llm_usagerecord_dashboard") == URL


def test_page_renders_for_staff_with_charts_and_totals(admin_client, usage) -> None:
    response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "LLM usage dashboard" in html
    assert "/static/vendor/chartjs/chart.umd.min.js" in html  # served by us, not a CDN
    # Nothing loaded from another host (a random CSRF token may well contain "cdn").
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html)
    for metric in ("calls", "total_tokens", "cost", "errors", "latency_p50_ms", "latency_p95_ms"):
        assert f'id="chart-{metric}"' in html
    chart = json.loads(html.split('<script id="usage-chart-data" type="application/json">')[1].split("</script>")[0])
    assert chart["groups"] == ["agent:sofia", "agent:helix"]  # agent:old is outside 30 days
    assert chart["series"]["calls"]["agent:sofia"][-2:] == [1, 2]
    assert chart["series"]["errors"]["agent:helix"][-1] == 1
    data = response.context["data"]
    assert (data["totals"]["calls"], data["totals"]["errors"], data["totals"]["total_tokens"]) == (4, 1, 45)


def test_json_sums_per_day_per_model(admin_client, usage) -> None:
    response = admin_client.get(URL, {"days": "7", "by": "model", "format": "json"})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert (data["days"], data["group_by"]) == (7, "model")
    today = timezone.now().date().isoformat()
    rows = {(r["day"], r["group"]): r for r in data["rows"]}
    gpt = rows[(today, "gpt-4.1-mini")]
    assert (gpt["calls"], gpt["errors"], gpt["total_tokens"]) == (2, 0, 40)
    assert gpt["cost"] == pytest.approx(0.003)
    assert gpt["latency_p50_ms"] == pytest.approx(100.0)
    assert rows[(today, "deepseek-r1")]["errors"] == 1
    assert data["chart"]["series"]["total_tokens"]["gpt-4.1-mini"][-1] == 40


def test_range_and_filters(admin_client, usage) -> None:
    ninety = admin_client.get(URL, {"days": "90", "format": "json"}).json()
    assert ninety["totals"]["calls"] == 5 and len(ninety["chart"]["labels"]) == 90
    sofia = admin_client.get(URL, {"agent_id": "agent:sofia", "format": "json"}).json()
    assert sofia["totals"]["calls"] == 3 and sofia["chart"]["groups"] == ["agent:sofia"]


def test_bad_parameters_fall_back_to_defaults(admin_client, usage) -> None:
    data = admin_client.get(URL, {"days": "3650", "by": "channel; drop table", "format": "json"}).json()
    assert (data["days"], data["group_by"]) == (30, "agent")
    assert admin_client.get(URL, {"days": "abc", "agent_id": "x" * 5000}).status_code == 200


def test_empty_database_says_so(admin_client, db) -> None:
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert "No LLM calls in the last 30 days" in response.content.decode()


def test_anonymous_and_non_staff_are_sent_to_login(client, db) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    user = User.objects.create_user("visitor", password="pw-visitor-1")
    client.force_login(user)
    response = client.get(URL, {"format": "json"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_usage_permission_is_refused(client, db) -> None:
    user = User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    user = User.objects.get(pk=user.pk)  # drop the cached permissions
    client.force_login(user)
    assert client.get(URL).status_code == 200


def test_changelist_links_to_dashboard(admin_client, usage) -> None:
    response = admin_client.get("/admin/llm/usagerecord/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{URL}"' in html
    assert "Totals of the filtered calls" in html  # the app's own changelist is still there
