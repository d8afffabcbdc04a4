"""A rate-limit policy's spend budget over /api/registry/: the rate-limits collection and
whole-registry documents (export, plan, apply) carry budget_usd / budget_period under the
services' rules, bad values a 422 at their path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.llm import services as llm
from apps.llm.models import RateLimitPolicy

ABOVE_ZERO = "must be above 0; leave it empty for no budget"
PLACES = "at most 4 decimal places"
DIGITS = "at most 12 digits, 4 of them after the point (below 100,000,000)"
PERIOD = "unknown period 'week'; allowed: day, month"


def _details(response, status: int = 422) -> list[dict]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == "validation_error"
    return body["details"]


def test_the_rate_limits_collection_writes_and_reads_a_budget(token_client):
    created = token_client.post(
        "/rate-limits/", json={"scope": "microdao", "subject": "microdao:7", "budget_usd": 150.25, "budget_period": "day"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["rpm"], body["tpm"], body["max_concurrent"]) == (None, None, None), "a budget alone is a policy"
    assert (body["budget_usd"], body["budget_period"]) == (150.25, "day")
    policy = RateLimitPolicy.objects.get()
    assert (policy.budget_usd, policy.budget_period) == (Decimal("150.25"), "day")

    patched = token_client.patch(f"/rate-limits/{policy.pk}/", json={"budget_usd": "99999999.9999"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["budget_usd"] == 99999999.9999 and patched.json()["budget_period"] == "day"
    got = token_client.get(f"/rate-limits/{policy.pk}/").json()
    assert (got["budget_usd"], got["budget_period"]) == (99999999.9999, "day")
    # Null takes the budget away; a policy without one reads null.
    assert token_client.patch(f"/rate-limits/{policy.pk}/", json={"budget_usd": None}).json()["budget_usd"] is None
    plain = token_client.post("/rate-limits/", json={"scope": "default", "rpm": 60}).json()
    assert (plain["budget_usd"], plain["budget_period"]) == (None, "month")


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"budget_usd": 0}, "budget_usd", ABOVE_ZERO),
        ({"budget_usd": -10}, "budget_usd", ABOVE_ZERO),
        ({"budget_usd": "1.23456"}, "budget_usd", PLACES),
        ({"budget_usd": 0.00001}, "budget_usd", PLACES),
        ({"budget_usd": 100000000}, "budget_usd", DIGITS),
        ({"budget_usd": 10, "budget_period": "week"}, "budget_period", PERIOD),
    ],
)
def test_a_bad_budget_is_422_at_its_field(token_client, body, path, message):
    response = token_client.post("/rate-limits/", json={"scope": "microdao", "subject": "microdao:7", **body})
    assert _details(response) == [{"path": path, "message": message}]
    assert not RateLimitPolicy.objects.exists()


@pytest.mark.parametrize("value", ["ten", "NaN", True, [1], {"usd": 1}])
def test_a_budget_that_is_no_number_is_422_not_500(token_client, value):
    response = token_client.post("/rate-limits/", json={"scope": "microdao", "subject": "microdao:7", "budget_usd": value})
    assert [d["path"] for d in _details(response)] == ["budget_usd"]
    assert not RateLimitPolicy.objects.exists()


def test_patching_a_bad_budget_keeps_the_stored_one(token_client):
    policy = llm.rate_limit_policy_create(scope="default", budget_usd=10, budget_period="day")
    for body, path, message in (
        ({"budget_usd": 0}, "budget_usd", ABOVE_ZERO),
        ({"budget_period": "week"}, "budget_period", PERIOD),
    ):
        assert _details(token_client.patch(f"/rate-limits/{policy.pk}/", json=body)) == [{"path": path, "message": message}]
    policy.refresh_from_db()
    assert (policy.budget_usd, policy.budget_period) == (Decimal("10"), "day")


def test_documents_export_apply_and_plan_the_budget(token_client):
    llm.rate_limit_policy_create(scope="default", rpm=60, budget_period="day")  # a period without a budget
    llm.rate_limit_policy_create(scope="microdao", subject="microdao:7", budget_usd="250.5", budget_period="day")
    document = token_client.get("/export").json()
    assert document["rate_limits"] == [
        {"scope": "default", "rpm": 60},
        {"scope": "microdao", "subject": "microdao:7", "budget_usd": 250.5, "budget_period": "day"},
    ]
    plan = token_client.post("/apply", json=document)
    assert plan.status_code == 200, plan.text
    assert plan.json()["summary"]["update"] == 0 and plan.json()["summary"]["create"] == 0

    # A budget without a period is per month; the plan shows the change.
    document["rate_limits"][1] = {"scope": "microdao", "subject": "microdao:7", "budget_usd": 300}
    document["rate_limits"].append({"scope": "microdao", "subject": "microdao:8", "budget_usd": 0.5, "budget_period": "day"})
    plan = token_client.post("/apply", json=document).json()
    changes = {c["id"]: (c["action"], c["changes"]) for c in plan["changes"] if c["type"] == "rate_limit"}
    assert changes["microdao:microdao:7"] == ("update", {"budget_usd": [250.5, 300.0], "budget_period": ["day", "month"]})
    assert changes["microdao:microdao:8"][0] == "create"
    assert changes["default"] == ("unchanged", {})
    stored = {p.subject: (p.budget_usd, p.budget_period) for p in RateLimitPolicy.objects.all()}
    assert stored == {"": (None, "day"), "microdao:7": (Decimal("300"), "month"), "microdao:8": (Decimal("0.5"), "day")}


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ({"budget_usd": 0}, "rate_limits[0].budget_usd", ABOVE_ZERO),
        ({"budget_usd": 12.34567}, "rate_limits[0].budget_usd", PLACES),
        ({"budget_usd": "1e9"}, "rate_limits[0].budget_usd", DIGITS),
        ({"budget_usd": "lots"}, "rate_limits[0].budget_usd", "must be a number of USD, or empty for no budget"),
        ({"budget_usd": 5, "budget_period": "week"}, "rate_limits[0].budget_period", PERIOD),
        ({"budget_usd": 5, "budget_period": 7}, "rate_limits[0].budget_period", "must be a string"),
    ],
)
def test_a_document_with_a_bad_budget_is_422_at_its_path_and_writes_nothing(token_client, policy, path, message):
    document = {"rate_limits": [{"scope": "microdao", "subject": "microdao:7", **policy}]}
    for query in ("?dry_run=1", ""):
        assert _details(token_client.post(f"/apply{query}", json=document)) == [{"path": path, "message": message}]
    assert not RateLimitPolicy.objects.exists()
