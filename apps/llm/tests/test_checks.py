"""llm.W001 (apps/llm/checks.py): agent-scope rate-limit policies for agents that do not
exist, found by `manage.py check --database default` in rows written past the services."""

from __future__ import annotations

import io

from django.core.checks import Tags, run_checks
from django.core.checks.messages import WARNING
from django.core.management import call_command

from apps.llm.choices import RateLimitScope
from apps.llm.models import RateLimitPolicy
from apps.llm.services import rate_limit_policy_create


def _policy_warnings() -> list:
    return [m for m in run_checks(databases=["default"], tags=[Tags.database]) if m.id == "llm.W001"]


def test_policies_for_missing_agents_are_reported_and_others_are_not(make_agents):
    make_agents("agent:pm")
    rate_limit_policy_create(scope=RateLimitScope.AGENT, subject="agent:pm", rpm=10)
    rate_limit_policy_create(scope=RateLimitScope.MICRODAO, subject="microdao:unknown", rpm=10)  # not an agent
    rate_limit_policy_create(scope=RateLimitScope.DEFAULT, rpm=100)
    assert _policy_warnings() == []

    # Written past the services, as rows from before the rule were.
    (gone,) = RateLimitPolicy.objects.bulk_create([RateLimitPolicy(scope=RateLimitScope.AGENT, subject="agent:gone", rpm=5)])
    RateLimitPolicy.objects.filter(scope=RateLimitScope.AGENT, subject="agent:pm").update(subject="agent:typo")
    typo = RateLimitPolicy.objects.get(subject="agent:typo")

    warnings = _policy_warnings()
    assert [(m.level, m.msg) for m in warnings] == [
        (
            WARNING,
            f"rate-limit policy {gone.pk} (scope agent, subject 'agent:gone') limits an agent that does not exist: 'agent:gone'",
        ),
        (
            WARNING,
            f"rate-limit policy {typo.pk} (scope agent, subject 'agent:typo') limits an agent that does not exist: 'agent:typo'",
        ),
    ]
    assert f"DELETE /api/registry/rate-limits/{gone.pk}/" in warnings[0].hint

    err = io.StringIO()
    call_command("check", "--database", "default", stdout=io.StringIO(), stderr=err)
    assert f"(llm.W001) rate-limit policy {typo.pk} (scope agent, subject 'agent:typo')" in err.getvalue()

    RateLimitPolicy.objects.filter(pk__in=[gone.pk, typo.pk]).delete()
    assert _policy_warnings() == []
