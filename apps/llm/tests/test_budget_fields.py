"""A rate-limit policy's spend budget (`budget_usd`, `budget_period`) through the doors of
apps.llm: the services, the seed-shaped import, the export and its commands, the admin."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.llm import services
from apps.llm.models import RateLimitPolicy
from apps.llm.selectors import registry_export
from daarion.infra.errors import ValidationFailed

pytestmark = pytest.mark.django_db

ABOVE_ZERO = "must be above 0; leave it empty for no budget"
PLACES = "at most 4 decimal places"
DIGITS = "at most 12 digits, 4 of them after the point (below 100,000,000)"
NOT_A_NUMBER = "must be a number of USD, or empty for no budget"
PERIOD = "unknown period 'week'; allowed: day, month"


def _refusal(**kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as raised:
        services.rate_limit_policy_create(scope="microdao", subject="microdao:7", **kwargs)
    assert not RateLimitPolicy.objects.exists()
    return raised.value.by_path()


# --- services ----------------------------------------------------------------------------


def test_a_policy_with_only_a_budget_is_valid_and_stored_exactly():
    policy = services.rate_limit_policy_create(scope="microdao", subject="microdao:7", budget_usd="12.3456", budget_period="day")
    policy.refresh_from_db()
    assert (policy.rpm, policy.tpm, policy.max_concurrent) == (None, None, None)
    assert (policy.budget_usd, policy.budget_period) == (Decimal("12.3456"), "day")
    # A float from YAML or JSON is the number it prints as, not its binary neighbour.
    policy = services.rate_limit_policy_update(policy=policy, budget_usd=0.1)
    policy.refresh_from_db()
    assert policy.budget_usd == Decimal("0.1")
    assert services.rate_limit_policy_create(scope="default", rpm=5).budget_period == "month"
    # The largest budget the column holds.
    services.rate_limit_policy_update(policy=policy, budget_usd="99999999.9999")
    policy.refresh_from_db()
    assert policy.budget_usd == Decimal("99999999.9999")
    # Null takes the budget away again.
    services.rate_limit_policy_update(policy=policy, budget_usd=None)
    policy.refresh_from_db()
    assert policy.budget_usd is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, ABOVE_ZERO),
        ("0.0000", ABOVE_ZERO),
        (-5, ABOVE_ZERO),
        (Decimal("-0.0001"), ABOVE_ZERO),
        ("1.23456", PLACES),
        (0.00001, PLACES),
        ("100000000", DIGITS),
        ("1e30", DIGITS),
        ("NaN", NOT_A_NUMBER),
        ("Infinity", NOT_A_NUMBER),
        ("ten", NOT_A_NUMBER),
        (True, NOT_A_NUMBER),
    ],
)
def test_a_bad_budget_is_refused_on_budget_usd(value, message):
    assert _refusal(budget_usd=value) == {"budget_usd": [message]}


def test_a_bad_period_is_refused_naming_the_allowed_ones():
    assert _refusal(budget_usd=10, budget_period="week") == {"budget_period": [PERIOD]}
    policy = services.rate_limit_policy_create(scope="default", budget_usd=10)
    with pytest.raises(ValidationFailed) as raised:
        services.rate_limit_policy_update(policy=policy, budget_period="week")
    assert raised.value.by_path() == {"budget_period": [PERIOD]}
    policy.refresh_from_db()
    assert policy.budget_period == "month"


# --- registry documents and the export ---------------------------------------------------


def test_a_registry_document_takes_a_budget_and_names_a_bad_one():
    from apps.registry.documents import registry_apply

    def apply(data):
        return registry_apply(document=data, prune=False)

    report = apply(
        {
            "rate_limits": [
                {"scope": "default", "rpm": 60},
                {"scope": "microdao", "subject": "microdao:7", "budget_usd": 250.5},
                {"scope": "microdao", "subject": "microdao:8", "budget_usd": 5, "budget_period": "day"},
            ]
        }
    )
    assert report.summary()["create"] == 3
    stored = {p.subject: (p.budget_usd, p.budget_period) for p in RateLimitPolicy.objects.all()}
    assert stored == {"": (None, "month"), "microdao:7": (Decimal("250.5"), "month"), "microdao:8": (Decimal("5"), "day")}
    # The same file again changes nothing (250.5 in the file is the stored 250.5000).
    again = apply(
        {
            "rate_limits": [
                {"scope": "microdao", "subject": "microdao:7", "budget_usd": 250.5},
            ]
        }
    )
    assert again.summary() == {"create": 0, "update": 0, "delete": 0, "unchanged": 1}

    for bad, message in ((0, ABOVE_ZERO), ("1.00001", PLACES)):
        with pytest.raises(ValidationFailed) as raised:
            apply({"rate_limits": [{"scope": "microdao", "subject": "microdao:9", "budget_usd": bad}]})
        assert raised.value.details == [{"path": "rate_limits[0].budget_usd", "message": message}]
    with pytest.raises(ValidationFailed) as raised:
        apply({"rate_limits": [{"scope": "microdao", "subject": "microdao:9", "budget_usd": 1, "budget_period": "week"}]})
    assert raised.value.details == [{"path": "rate_limits[0].budget_period", "message": PERIOD}]
    assert not RateLimitPolicy.objects.filter(subject="microdao:9").exists()


def test_the_export_writes_the_budget_and_its_period_only_beside_a_budget():
    services.rate_limit_policy_create(scope="default", rpm=60, budget_period="day")  # a period without a budget
    services.rate_limit_policy_create(scope="microdao", subject="microdao:7", budget_usd="250.5000", budget_period="day")
    services.rate_limit_policy_create(scope="microdao", subject="microdao:8", tpm=1000, budget_usd="40")
    assert registry_export()["rate_limits"] == [
        {"scope": "default", "rpm": 60},
        {"scope": "microdao", "subject": "microdao:7", "budget_usd": 250.5, "budget_period": "day"},
        {"scope": "microdao", "subject": "microdao:8", "tpm": 1000, "budget_usd": 40, "budget_period": "month"},
    ]


def test_export_registry_then_import_registry_round_trips_the_budget():
    services.rate_limit_policy_create(scope="default", rpm=60, budget_period="day")
    services.rate_limit_policy_create(scope="microdao", subject="microdao:7", budget_usd="1234.5678", budget_period="day")
    services.rate_limit_policy_create(scope="microdao", subject="microdao:8", budget_usd="0.0001")
    out = io.StringIO()
    call_command("export_registry", stdout=out)
    text = out.getvalue()
    assert "budget_usd: 1234.5678\n" in text, text
    before = {p.subject: (p.budget_usd, p.budget_period) for p in RateLimitPolicy.objects.all()}

    printed = io.StringIO()
    call_command("import_registry", "-", stdin=io.StringIO(text), stdout=printed)
    assert printed.getvalue().strip().splitlines()[-1] == "0 created, 0 updated, 3 unchanged, 0 deleted"
    # Into an empty registry: the same budgets and periods come back.
    RateLimitPolicy.objects.all().delete()
    call_command("import_registry", "-", stdin=io.StringIO(text), stdout=io.StringIO())
    after = {p.subject: (p.budget_usd, p.budget_period) for p in RateLimitPolicy.objects.all()}
    assert after == {**before, "": (None, "month")}  # the period of no budget is not exported


def test_import_registry_command_names_a_bad_budget():
    for text, expected in (
        (
            'rate_limits:\n  - {scope: microdao, subject: "microdao:7", budget_usd: -3}\n',
            f"rate_limits[0].budget_usd: {ABOVE_ZERO}",
        ),
        (
            'rate_limits:\n  - {scope: microdao, subject: "microdao:7", budget_usd: 9.99999}\n',
            f"rate_limits[0].budget_usd: {PLACES}",
        ),
        (
            'rate_limits:\n  - {scope: microdao, subject: "microdao:7", budget_usd: 5, budget_period: week}\n',
            f"rate_limits[0].budget_period: {PERIOD}",
        ),
    ):
        with pytest.raises(CommandError) as raised:
            call_command("import_registry", "-", stdin=io.StringIO(text), stdout=io.StringIO())
        assert str(raised.value) == expected
    assert not RateLimitPolicy.objects.exists()
    good = 'rate_limits:\n  - {scope: microdao, subject: "microdao:7", budget_usd: 9.5, budget_period: day}\n'
    call_command("import_registry", "-", stdin=io.StringIO(good), stdout=io.StringIO())
    assert yaml.safe_load(good)["rate_limits"][0]["budget_usd"] == 9.5
    assert RateLimitPolicy.objects.values_list("budget_usd", "budget_period").get() == (Decimal("9.5"), "day")


# --- admin -------------------------------------------------------------------------------


def _form(**overrides) -> dict:
    return {
        "scope": "microdao",
        "subject": "microdao:7",
        "rpm": "",
        "tpm": "",
        "max_concurrent": "",
        "budget_usd": "",
        "budget_period": "month",
        "enabled": "on",
        **overrides,
    }


@pytest.mark.parametrize(
    ("value", "message"), [("0", ABOVE_ZERO), ("-1", ABOVE_ZERO), ("1.23456", PLACES), ("123456789", DIGITS)]
)
def test_admin_shows_a_bad_budget_on_its_field(admin_client, value, message):
    response = admin_client.post("/admin/llm/ratelimitpolicy/add/", _form(budget_usd=value))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"budget_usd": [message]}
    assert not RateLimitPolicy.objects.exists()


def test_admin_saves_a_budget_only_policy_and_lists_it(admin_client):
    response = admin_client.post("/admin/llm/ratelimitpolicy/add/", _form(budget_usd="75.25", budget_period="day"))
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = RateLimitPolicy.objects.get()
    assert (policy.budget_usd, policy.budget_period) == (Decimal("75.25"), "day")
    assert "75.25 per day" in admin_client.get("/admin/llm/ratelimitpolicy/").content.decode()
    data = _form(budget_usd="80", budget_period="week")
    del data["scope"], data["subject"]  # read-only once stored
    response = admin_client.post(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/", data)
    assert response.status_code == 200 and "budget_period" in response.context["adminform"].form.errors
    data["budget_period"] = "month"
    assert admin_client.post(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/", data).status_code == 302
    policy.refresh_from_db()
    assert (policy.budget_usd, policy.budget_period) == (Decimal("80"), "month")
    # Emptying the field takes the budget away.
    data["budget_usd"] = ""
    assert admin_client.post(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/", data).status_code == 302
    policy.refresh_from_db()
    assert policy.budget_usd is None


def test_an_admin_post_without_a_period_keeps_the_stored_one(admin_client):
    data = _form(budget_usd="5")
    del data["budget_period"]
    assert admin_client.post("/admin/llm/ratelimitpolicy/add/", data).status_code == 302
    policy = RateLimitPolicy.objects.get()
    assert policy.budget_period == "month"
    services.rate_limit_policy_update(policy=policy, budget_period="day")
    del data["scope"], data["subject"]
    data["budget_usd"] = "6"
    assert admin_client.post(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/", data).status_code == 302
    policy.refresh_from_db()
    assert (policy.budget_usd, policy.budget_period) == (Decimal("6"), "day")
