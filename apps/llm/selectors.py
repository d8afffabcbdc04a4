"""Reads of the LLM registry: the in-process snapshot the hot path uses, and the export."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate

from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy, UsageRecord
from apps.llm.services import REGISTRY_CONFIG
from daarion.infra.agent_directory import agent_microdao
from apps.access.auth import Principal
from daarion.infra.errors import Forbidden
from daarion.infra.live_config import LiveSnapshot


@dataclass(frozen=True)
class ProviderSpec:
    id: int
    name: str
    kind: str
    base_url: str
    api_key: str  # resolved: the stored key, else the named environment variable
    api_key_env: str
    timeout: float
    max_retries: int
    extra_headers: tuple[tuple[str, str], ...]
    enabled: bool

    @property
    def fingerprint(self) -> tuple:
        """Changes when a pooled client must be rebuilt."""
        return (self.kind, self.base_url, self.api_key, self.timeout, self.extra_headers)


@dataclass(frozen=True)
class DeploymentSpec:
    id: int
    provider: ProviderSpec
    upstream_model: str
    weight: int
    rpm_limit: int | None
    tpm_limit: int | None

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    deployments: tuple[DeploymentSpec, ...]
    fallbacks: tuple[str, ...]
    context_window: int
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    can_embed: bool
    enabled: bool
    drop_params: bool = False  # LogicalModel.drop_unsupported_params

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (self.input_price_per_mtok * prompt_tokens + self.output_price_per_mtok * completion_tokens) / Decimal(1_000_000)


@dataclass(frozen=True)
class PolicySpec:
    scope: str
    subject: str
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    budget_usd: Decimal | None = None  # spend per budget_period; None: no budget
    budget_period: str = "month"


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec]
    policies: dict[tuple[str, str], PolicySpec]

    def policy_for(self, scope: str, subject: str) -> PolicySpec | None:
        return self.policies.get((scope, subject))


def _provider_spec(row: Provider) -> ProviderSpec:
    api_key = row.api_key or (os.environ.get(row.api_key_env, "") if row.api_key_env else "")
    return ProviderSpec(
        id=row.pk,
        name=row.name,
        kind=row.kind,
        base_url=row.base_url,
        api_key=api_key,
        api_key_env=row.api_key_env,
        timeout=float(row.timeout_seconds),
        max_retries=int(row.max_retries),
        extra_headers=tuple(sorted((row.extra_headers or {}).items())),
        enabled=row.enabled,
    )


def load_registry() -> Registry:
    """Three queries; runs only when the registry version in Redis moved."""
    providers = {row.pk: _provider_spec(row) for row in Provider.objects.all()}
    by_model: dict[int, list[DeploymentSpec]] = {}
    for row in Deployment.objects.filter(enabled=True, weight__gt=0).order_by("id"):
        provider = providers[row.provider_id]
        if not provider.enabled:
            continue
        by_model.setdefault(row.logical_model_id, []).append(
            DeploymentSpec(row.pk, provider, row.upstream_model, row.weight, row.rpm_limit, row.tpm_limit)
        )
    models = {
        row.name: ModelSpec(
            name=row.name,
            deployments=tuple(by_model.get(row.pk, [])),
            fallbacks=tuple(row.fallbacks or []),
            context_window=row.context_window,
            input_price_per_mtok=row.input_price_per_mtok,
            output_price_per_mtok=row.output_price_per_mtok,
            can_embed=row.can_embed,
            enabled=row.enabled,
            drop_params=row.drop_unsupported_params,
        )
        for row in LogicalModel.objects.all()
    }
    policies = {
        (row.scope, row.subject): PolicySpec(
            row.scope, row.subject, row.rpm, row.tpm, row.max_concurrent, row.budget_usd, row.budget_period
        )
        for row in RateLimitPolicy.objects.filter(enabled=True)
    }
    return Registry(models=models, policies=policies)


registry_snapshot: LiveSnapshot[Registry] = LiveSnapshot(REGISTRY_CONFIG, load_registry, max_age=60.0)


def _budget_number(value: Decimal) -> int | float:
    """A budget as a YAML/JSON number: 50 rather than 50.0000. At most 12 significant digits,
    so the float is exact enough to come back as the same Decimal."""
    return int(value) if value == value.to_integral_value() else float(value)


def registry_export() -> dict[str, Any]:
    """The registry in the import file's shape. Stored API keys are never written out."""
    providers: dict[str, Any] = {}
    for row in Provider.objects.order_by("name"):
        spec: dict[str, Any] = {"kind": row.kind}
        if row.base_url:
            spec["base_url"] = row.base_url
        if row.api_key_env:
            spec["api_key_env"] = row.api_key_env
        spec["timeout_seconds"] = row.timeout_seconds
        spec["max_retries"] = row.max_retries
        if row.extra_headers:
            spec["extra_headers"] = dict(row.extra_headers)
        if not row.enabled:
            spec["enabled"] = False
        providers[row.name] = spec
    models: dict[str, Any] = {}
    for logical in LogicalModel.objects.order_by("name").prefetch_related("deployments__provider"):
        deployments = list(logical.deployments.all())
        spec = {}
        if (
            len(deployments) == 1
            and deployments[0].weight == 1
            and deployments[0].enabled
            and not (deployments[0].rpm_limit or deployments[0].tpm_limit)
        ):
            spec["provider"] = deployments[0].provider.name
            spec["name"] = deployments[0].upstream_model
        else:
            spec["deployments"] = [
                {
                    "provider": d.provider.name,
                    "name": d.upstream_model,
                    "weight": d.weight,
                    **({"rpm": d.rpm_limit} if d.rpm_limit else {}),
                    **({"tpm": d.tpm_limit} if d.tpm_limit else {}),
                    **({} if d.enabled else {"enabled": False}),
                }
                for d in deployments
            ]
        if logical.fallbacks:
            spec["fallbacks"] = list(logical.fallbacks)
        spec["context_window"] = logical.context_window
        if logical.input_price_per_mtok or logical.output_price_per_mtok:
            spec["price"] = {"input": float(logical.input_price_per_mtok), "output": float(logical.output_price_per_mtok)}
        if logical.can_embed:
            spec["can_embed"] = True
        if logical.drop_unsupported_params:
            spec["drop_unsupported_params"] = True
        if not logical.enabled:
            spec["enabled"] = False
        if logical.description:
            spec["description"] = logical.description
        models[logical.name] = spec
    data: dict[str, Any] = {"providers": providers, "models": models}
    policies = [
        {
            "scope": p.scope,
            **({"subject": p.subject} if p.subject else {}),
            **{k: getattr(p, k) for k in ("rpm", "tpm", "max_concurrent") if getattr(p, k) is not None},
            # The period only beside a budget (without one it means nothing); an import that
            # finds no budget leaves the stored period alone, so the round trip holds.
            **(
                {"budget_usd": _budget_number(p.budget_usd), "budget_period": p.budget_period} if p.budget_usd is not None else {}
            ),
            **({} if p.enabled else {"enabled": False}),
        }
        for p in RateLimitPolicy.objects.order_by("scope", "subject")
    ]
    if policies:
        data["rate_limits"] = policies
    return data


def usage_daily_totals(
    *, since: datetime | None = None, until: datetime | None = None, group_by: str = "agent_id", queryset=None
) -> list[dict[str, Any]]:
    """Calls, tokens, cost, latency and errors per day and per agent (or model)."""
    if group_by not in {"agent_id", "logical_model", "microdao_id"}:
        raise ValueError(f"cannot group usage by {group_by!r}")
    rows = UsageRecord.objects.all() if queryset is None else queryset
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)

    return list(
        rows.annotate(day=TruncDate("created_at"))
        .values("day", group_by)
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=~Q(status="ok")),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            total_tokens=Sum("total_tokens"),
            cost=Sum("cost"),
            avg_latency_ms=Avg("latency_ms"),
        )
        .order_by("-day", group_by)
    )


# --- operators' views: deployment health, budget spend, usage per token ------------------------


def period_start(period: str, now: datetime) -> datetime:
    """The start (UTC) of the budget period `now` is in: its day or its month."""
    from apps.llm.choices import BudgetPeriod

    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start if period == BudgetPeriod.DAY else start.replace(day=1)


def policy_spend(*, policy: RateLimitPolicy, now: datetime | None = None) -> Decimal | None:
    """What the policy's subject has spent so far in its budget period, from the usage records
    (a few seconds behind the proxy's own counters). None for the default policy, which
    applies to each agent separately."""
    from apps.llm.choices import RateLimitScope

    fields: dict[str, str] = {RateLimitScope.AGENT: "agent_id", RateLimitScope.MICRODAO: "microdao_id"}
    field = fields.get(policy.scope)
    if field is None:
        return None
    since = period_start(policy.budget_period, now or datetime.now(UTC))
    total = UsageRecord.objects.filter(**{field: policy.subject}, created_at__gte=since).aggregate(s=Sum("cost"))["s"]
    return total or Decimal(0)


def error_stats(*, field: str, names: list[str], hours: int = 1) -> dict[str, dict[str, Any]]:
    """Per provider or logical model (`field`: "provider" or "logical_model"): calls and errors
    in the last `hours`, and the last error (type and time) ever recorded."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows = (
        UsageRecord.objects.filter(**{f"{field}__in": names}, created_at__gte=since)
        .exclude(status="refused")
        .values(field)
        .annotate(calls=Count("id"), errors=Count("id", filter=Q(status="error")))
    )
    out: dict[str, dict[str, Any]] = {name: {"calls": 0, "errors": 0, "last_error": None} for name in names}
    for row in rows:
        out[row[field]].update(calls=row["calls"], errors=row["errors"])
    for name in names:
        last = (
            UsageRecord.objects.filter(**{field: name}, status="error")
            .order_by("-created_at")
            .values("error_type", "created_at")
            .first()
        )
        out[name]["last_error"] = last
    return out


def deployment_cooldowns(*, deployment_ids: list[int]) -> dict[int, datetime]:
    """Deployments cooling down after repeated failures (apps/llm/router.Health, kept in
    Redis): id -> until when. Empty when Redis cannot be read (the admin still renders)."""
    import logging

    from apps.llm.router import Health
    from daarion.infra.redis_client import get_redis

    if not deployment_ids:
        return {}
    try:
        values = get_redis().mget([Health._cool_key(str(i)) for i in deployment_ids])
    except Exception:  # noqa: BLE001 - a view for humans: show what can be shown
        logging.getLogger(__name__).warning("cannot read deployment cooldowns", exc_info=True)
        return {}
    now = datetime.now(UTC).timestamp()
    return {i: datetime.fromtimestamp(float(v), UTC) for i, v in zip(deployment_ids, values, strict=True) if v and float(v) > now}


def usage_by_token(*, token_ids: list[int], days: int = 30) -> dict[int, dict[str, Any]]:
    """Calls and spend per service token over the last `days` (records carry the token id)."""
    since = datetime.now(UTC) - timedelta(days=days)
    rows = (
        UsageRecord.objects.filter(token_id__in=token_ids, created_at__gte=since)
        .values("token_id")
        .annotate(calls=Count("id"), cost=Sum("cost"))
    )
    # token_id is never None here: the filter names the ids.
    return {cast(int, row["token_id"]): {"calls": row["calls"], "cost": row["cost"] or Decimal(0)} for row in rows}


def cooldown_metrics() -> Iterable[Any]:
    """Scrape-time gauge (daarion.observability.metrics): 1 for each deployment cooling down
    after repeated failures, 0 for the others, by logical model and provider."""
    from prometheus_client.core import GaugeMetricFamily

    rows = list(Deployment.objects.filter(enabled=True).values_list("id", "logical_model__name", "provider__name"))
    cooling = deployment_cooldowns(deployment_ids=[row[0] for row in rows])
    gauge = GaugeMetricFamily(
        "daarion_llm_deployment_cooling_down",
        "1 while a deployment is skipped after repeated failures (router cooldown).",
        labels=["model", "provider", "deployment"],
    )
    for deployment_id, model, provider in rows:
        gauge.add_metric([model, provider, str(deployment_id)], 1 if deployment_id in cooling else 0)
    yield gauge


async def call_microdao(*, principal: Principal, agent_id: str | None, named: str | None) -> str | None:
    """The microDAO a call's limits, budget and usage are charged to: never one the caller
    names freely (issue #18: an agent of one microDAO exhausted another's quota).

    - A call for a known agent: the agent's microDAO, from the agent registry; naming another
      is 403 `microdao_mismatch`.
    - Otherwise the named microDAO only for a token bound to agents of that microDAO (403
      `microdao_mismatch` for another one); a token bound to no agents that names one is
      charged to the default policy (None).
    """
    if agent_id:
        home = await agent_microdao(agent_id)
        if home is not None:
            if named and named != home:
                raise _mismatch(
                    f"agent {agent_id!r} belongs to {home!r}, not {named!r}",
                    {"agent_id": agent_id, "microdao_id": named, "agent_microdao_id": home},
                )
            return home
    if not named:
        return None
    if principal.agents is None:
        return None
    bound = {home for agent in principal.agents if (home := await agent_microdao(agent)) is not None}
    if named not in bound:
        raise _mismatch(
            f"token {principal.name!r} is not bound to {named!r}", {"microdao_id": named, "token_microdao_ids": sorted(bound)}
        )
    return named


def _mismatch(message: str, details: dict[str, Any]) -> Forbidden:
    return Forbidden(message, type="microdao_mismatch", details=details)
