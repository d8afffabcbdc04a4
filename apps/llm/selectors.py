"""Reads of the LLM registry: the in-process snapshot the hot path uses, and the export."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate

from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy, UsageRecord
from apps.llm.services import REGISTRY_CONFIG
from daarion.agent_directory import agent_microdao
from daarion.auth import Principal
from daarion.errors import Forbidden
from daarion.live_config import LiveSnapshot


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
        return (
            self.input_price_per_mtok * prompt_tokens + self.output_price_per_mtok * completion_tokens
        ) / Decimal(1_000_000)


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
        (row.scope, row.subject): PolicySpec(row.scope, row.subject, row.rpm, row.tpm, row.max_concurrent,
                                             row.budget_usd, row.budget_period)
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
    for row in LogicalModel.objects.order_by("name").prefetch_related("deployments__provider"):
        deployments = list(row.deployments.all())
        spec = {}
        if len(deployments) == 1 and deployments[0].weight == 1 and deployments[0].enabled and not (
            deployments[0].rpm_limit or deployments[0].tpm_limit
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
        if row.fallbacks:
            spec["fallbacks"] = list(row.fallbacks)
        spec["context_window"] = row.context_window
        if row.input_price_per_mtok or row.output_price_per_mtok:
            spec["price"] = {"input": float(row.input_price_per_mtok), "output": float(row.output_price_per_mtok)}
        if row.can_embed:
            spec["can_embed"] = True
        if row.drop_unsupported_params:
            spec["drop_unsupported_params"] = True
        if not row.enabled:
            spec["enabled"] = False
        if row.description:
            spec["description"] = row.description
        models[row.name] = spec
    data: dict[str, Any] = {"providers": providers, "models": models}
    policies = [
        {
            "scope": p.scope,
            **({"subject": p.subject} if p.subject else {}),
            **{k: getattr(p, k) for k in ("rpm", "tpm", "max_concurrent") if getattr(p, k) is not None},
            # The period only beside a budget (without one it means nothing); an import that
            # finds no budget leaves the stored period alone, so the round trip holds.
            **({"budget_usd": _budget_number(p.budget_usd), "budget_period": p.budget_period}
               if p.budget_usd is not None else {}),
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
                raise _mismatch(f"agent {agent_id!r} belongs to {home!r}, not {named!r}",
                                {"agent_id": agent_id, "microdao_id": named, "agent_microdao_id": home})
            return home
    if not named:
        return None
    if principal.agents is None:
        return None
    bound = {home for agent in principal.agents if (home := await agent_microdao(agent)) is not None}
    if named not in bound:
        raise _mismatch(f"token {principal.name!r} is not bound to {named!r}",
                        {"microdao_id": named, "token_microdao_ids": sorted(bound)})
    return named


def _mismatch(message: str, details: dict[str, Any]) -> Forbidden:
    return Forbidden(message, type="microdao_mismatch", details=details)
