"""System check of the LLM proxy: agent-scope rate-limit policies whose subject is an agent
that does not exist (`manage.py check --database default`; see apps/access/checks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks

from apps.access.checks import dangling_agent_warnings, quoted


def check_rate_limit_policy_agents(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """llm.W001: an `agent` rate-limit policy for an agent that does not exist."""
    from apps.llm.choices import RateLimitScope
    from apps.llm.models import RateLimitPolicy

    return dangling_agent_warnings(
        model=RateLimitPolicy,
        databases=databases,
        references=lambda rows: (
            (policy, [policy.subject]) for policy in rows.filter(scope=RateLimitScope.AGENT).order_by("subject")
        ),
        describe=lambda policy, missing: (
            f"rate-limit policy {policy.pk} (scope agent, subject {policy.subject!r}) limits an agent that "
            f"does not exist: {quoted(missing)}"
        ),
        hint=lambda policy: (
            f"Delete policy {policy.pk} (admin: LLM proxy > Rate-limit policies; or "
            f"DELETE /api/registry/rate-limits/{policy.pk}/), or create agent {policy.subject!r}; until then "
            "it limits whatever agent is created under that id, and every save of it is refused."
        ),
        check_id="llm.W001",
    )
