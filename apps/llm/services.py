"""Writes of the LLM registry. Admin, the import command and the API all come through here,
so every rule (URLs, key sources, fallbacks without loops) holds whichever door was used."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from urllib.parse import urlparse

from django.db import transaction
from django.db.models import ProtectedError

from apps.llm.choices import BudgetPeriod, ProviderKind, RateLimitScope
from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy
from daarion.infra.agent_directory import unknown_agent_ids
from daarion.infra.errors import Conflict, ValidationFailed, validate_model
from daarion.infra.live_config import bump_version
from daarion.infra.model_update import model_update

REGISTRY_CONFIG = "llm-registry"

# Where a provider of a well-known kind answers when no base URL is given.
DEFAULT_BASE_URLS: dict[str, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.DEEPSEEK: "https://api.deepseek.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_UNSET: Any = object()
# What an update may change (a provider's and a model's name identify them).
PROVIDER_FIELDS = ("kind", "base_url", "api_key", "api_key_env", "timeout_seconds", "max_retries", "extra_headers", "enabled")
LOGICAL_MODEL_FIELDS = (
    "fallbacks",
    "context_window",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "can_embed",
    "enabled",
    "description",
    "drop_unsupported_params",
)


# --- providers ---------------------------------------------------------------------------


def provider_validate(provider: Provider) -> None:
    """Every rule a provider must meet (filling in a known kind's base URL); raises
    ValidationFailed keyed by field. The services run it before each save, the admin on an
    unsaved copy so a refusal lands on its form field."""
    errors: dict[str, str] = {}
    if provider.kind not in ProviderKind.values:
        errors["kind"] = f"unknown kind {provider.kind!r}; known: {', '.join(ProviderKind.values)}"
    if not provider.base_url and provider.kind in DEFAULT_BASE_URLS:
        provider.base_url = DEFAULT_BASE_URLS[provider.kind]
    if provider.base_url:
        try:
            parsed = urlparse(provider.base_url)
        except ValueError:  # "http://[::1" and the like: not a URL at all
            parsed = None
        if parsed is None or parsed.scheme not in {"http", "https"} or not parsed.netloc:
            errors["base_url"] = f"{provider.base_url!r} is not an http(s) URL"
        provider.base_url = provider.base_url.rstrip("/")
    elif provider.kind != ProviderKind.STUB:
        errors["base_url"] = f"a {provider.kind} provider needs a base URL"
    if provider.api_key_env and not _ENV_NAME.match(provider.api_key_env):
        errors["api_key_env"] = f"{provider.api_key_env!r} is not an environment variable name"
    headers = provider.extra_headers
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and _HEADER_NAME.match(k) and isinstance(v, str) and not _BAD_HEADER_VALUE.search(v)
        for k, v in headers.items()
    ):
        # CR/LF would split the header (and httpx refuses to send it, failing every call).
        errors["extra_headers"] = "must be an object of header name -> string value without CR, LF or NUL"
    if errors:
        raise ValidationFailed.on_fields(errors)
    validate_model(provider)


@transaction.atomic
def provider_create(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    api_key: str = "",
    api_key_env: str = "",
    timeout_seconds: float = 60.0,
    max_retries: int = 2,
    extra_headers: dict[str, str] | None = None,
    enabled: bool = True,
) -> Provider:
    provider = Provider(
        name=name,
        kind=kind,
        base_url=base_url or "",
        api_key=api_key or "",
        api_key_env=api_key_env or "",
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        extra_headers=extra_headers or {},
        enabled=enabled,
    )
    provider_validate(provider)
    provider.save()
    bump_version(REGISTRY_CONFIG)
    return provider


@transaction.atomic
def provider_update(
    *,
    provider: Provider,
    kind: str = _UNSET,
    base_url: str = _UNSET,
    api_key: str | None = None,
    api_key_env: str = _UNSET,
    timeout_seconds: float = _UNSET,
    max_retries: int = _UNSET,
    extra_headers: dict[str, str] = _UNSET,
    enabled: bool = _UNSET,
) -> Provider:
    """`api_key=None` keeps the stored key (admin never shows it); `""` clears it."""
    changes = {
        "kind": kind,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "timeout_seconds": timeout_seconds,
        "max_retries": max_retries,
        "extra_headers": extra_headers,
        "enabled": enabled,
    }
    data = {attr: value if value is not None else "" for attr, value in changes.items() if value is not _UNSET}
    if api_key is not None:
        data["api_key"] = api_key
    if model_update(instance=provider, fields=PROVIDER_FIELDS, data=data, validate=provider_validate):
        bump_version(REGISTRY_CONFIG)
    return provider


@transaction.atomic
def provider_delete(*, provider: Provider) -> None:
    try:
        provider.delete()
    except ProtectedError as exc:
        users = sorted({str(cast(Deployment, d).logical_model) for d in exc.protected_objects})
        raise Conflict(
            f"provider {provider.name!r} still serves model(s) {', '.join(users)}; remove those deployments first",
            details={"models": users},
        ) from exc
    bump_version(REGISTRY_CONFIG)


# --- logical models ----------------------------------------------------------------------


def _fallback_graph(overrides: dict[str, list[str]]) -> dict[str, list[str]]:
    graph = {name: list(fallbacks or []) for name, fallbacks in LogicalModel.objects.values_list("name", "fallbacks")}
    graph.update(overrides)
    return graph


def _find_cycle(graph: dict[str, list[str]], start: str) -> list[str] | None:
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        on_path.add(node)
        path.append(node)
        for nxt in graph.get(node, []):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    return visit(start)


def clean_fallbacks(name: str, fallbacks: Any, graph_overrides: dict[str, list[str]] | None = None) -> list[str]:
    """`fallbacks` of model `name` if they are distinct, known logical models that never lead
    back to it; else ValidationFailed on `fallbacks`."""
    if not isinstance(fallbacks, list) or not all(isinstance(item, str) and item for item in fallbacks):
        raise ValidationFailed.on_fields({"fallbacks": "must be a list of logical model names"})
    if len(set(fallbacks)) != len(fallbacks):
        raise ValidationFailed.on_fields({"fallbacks": "lists a model twice"})
    if name in fallbacks:
        raise ValidationFailed.on_fields({"fallbacks": f"{name!r} cannot fall back to itself"})
    graph = _fallback_graph({**(graph_overrides or {}), name: fallbacks})
    unknown = [item for item in fallbacks if item not in graph]
    if unknown:
        raise ValidationFailed.on_fields({"fallbacks": f"unknown logical model(s): {', '.join(unknown)}"})
    cycle = _find_cycle(graph, name)
    if cycle:
        raise ValidationFailed.on_fields({"fallbacks": "fallbacks would loop: " + " → ".join(cycle)})
    return fallbacks


def _to_decimal(value: Any, field_name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationFailed.on_fields({field_name: f"{value!r} is not a number"}) from exc
    if not number.is_finite() or number < 0:
        raise ValidationFailed.on_fields({field_name: "must be a number ≥ 0"})
    return number


@transaction.atomic
def logical_model_create(
    *,
    name: str,
    fallbacks: list[str] | None = None,
    context_window: int = 8192,
    input_price_per_mtok: Decimal | float | str = 0,
    output_price_per_mtok: Decimal | float | str = 0,
    can_embed: bool = False,
    enabled: bool = True,
    description: str = "",
    drop_unsupported_params: bool = False,
) -> LogicalModel:
    model = LogicalModel(
        name=name,
        drop_unsupported_params=drop_unsupported_params,
        context_window=context_window,
        input_price_per_mtok=_to_decimal(input_price_per_mtok, "input_price_per_mtok"),
        output_price_per_mtok=_to_decimal(output_price_per_mtok, "output_price_per_mtok"),
        can_embed=can_embed,
        enabled=enabled,
        description=description,
    )
    validate_model(model, exclude=["fallbacks"])
    model.fallbacks = clean_fallbacks(name, fallbacks or [])
    model.save()
    bump_version(REGISTRY_CONFIG)
    return model


@transaction.atomic
def logical_model_update(
    *,
    model: LogicalModel,
    fallbacks: list[str] = _UNSET,
    context_window: int = _UNSET,
    input_price_per_mtok: Any = _UNSET,
    output_price_per_mtok: Any = _UNSET,
    can_embed: bool = _UNSET,
    enabled: bool = _UNSET,
    description: str = _UNSET,
    drop_unsupported_params: bool = _UNSET,
) -> LogicalModel:
    data = {
        attr: value
        for attr, value in {
            "context_window": context_window,
            "can_embed": can_embed,
            "enabled": enabled,
            "description": description,
            "drop_unsupported_params": drop_unsupported_params,
        }.items()
        if value is not _UNSET
    }
    if fallbacks is not _UNSET:
        data["fallbacks"] = clean_fallbacks(model.name, fallbacks)
    if input_price_per_mtok is not _UNSET:
        data["input_price_per_mtok"] = _to_decimal(input_price_per_mtok, "input_price_per_mtok")
    if output_price_per_mtok is not _UNSET:
        data["output_price_per_mtok"] = _to_decimal(output_price_per_mtok, "output_price_per_mtok")
    if model_update(instance=model, fields=LOGICAL_MODEL_FIELDS, data=data):
        bump_version(REGISTRY_CONFIG)
    return model


@transaction.atomic
def logical_model_delete(*, model: LogicalModel) -> None:
    users = sorted(
        name
        for name, fallbacks in LogicalModel.objects.exclude(pk=model.pk).values_list("name", "fallbacks")
        if model.name in (fallbacks or [])
    )
    if users:
        raise Conflict(
            f"model {model.name!r} is a fallback of {', '.join(users)}; remove it there first",
            details={"models": users},
        )
    model.delete()
    bump_version(REGISTRY_CONFIG)


# --- deployments -------------------------------------------------------------------------


# What a registry document says of a deployment beyond where it points.
DEPLOYMENT_FIELDS = ("weight", "rpm_limit", "tpm_limit", "enabled")
DEPLOYMENT_UPDATE_FIELDS = ("provider", "upstream_model", *DEPLOYMENT_FIELDS)


@transaction.atomic
def deployment_create(
    *,
    logical_model: LogicalModel,
    provider: Provider,
    upstream_model: str,
    weight: int = 1,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    enabled: bool = True,
) -> Deployment:
    deployment = Deployment(
        logical_model=logical_model,
        provider=provider,
        upstream_model=upstream_model,
        weight=weight,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        enabled=enabled,
    )
    validate_model(deployment)
    deployment.save()
    bump_version(REGISTRY_CONFIG)
    return deployment


@transaction.atomic
def deployment_update(*, deployment: Deployment, **changes: Any) -> Deployment:
    """Moves or retunes a deployment (its logical model names it: not among the fields)."""
    if model_update(instance=deployment, fields=DEPLOYMENT_UPDATE_FIELDS, data=changes):
        bump_version(REGISTRY_CONFIG)
    return deployment


@transaction.atomic
def deployment_delete(*, deployment: Deployment) -> None:
    deployment.delete()
    bump_version(REGISTRY_CONFIG)


def _refused(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


@transaction.atomic
def logical_model_deployments_sync(
    *, model: LogicalModel, deployments: Sequence[Mapping[str, Any]], path: str = "deployments"
) -> bool:
    """Makes the model's deployments exactly `deployments`; returns whether anything changed.

    The one writer of a model's deployment list: the registry document, the registry API and
    the admin's inline all come through here. Each item names its `provider` (a name or a
    row) and `upstream_model`, optionally `weight`, `rpm_limit`, `tpm_limit`, `enabled` (left
    out: the stored or default value), and optionally the `id` of a deployment of this model
    to change in place (the admin edits rows; documents name a deployment by provider and
    upstream model). Rows no item matches are deleted. Refusals are ValidationFailed with
    `{path}[index].field` paths.
    """
    names = [d.get("provider") for d in deployments if isinstance(d.get("provider"), str)]
    providers = {p.name: p for p in Provider.objects.filter(name__in=names)}
    rows = list(model.deployments.select_related("provider"))
    by_id = {d.pk: d for d in rows}
    by_key = {(d.provider.name, d.upstream_model): d for d in rows}
    seen: set[tuple[str, str]] = set()
    kept: set[int] = set()
    plans: list[tuple[str, Deployment | None, Provider, str, dict[str, Any]]] = []
    for index, spec in enumerate(deployments):
        where = f"{path}[{index}]"
        # A PATCH validates its nested deployments partially (DRF), so a field may be missing.
        for name in ("provider", "upstream_model"):
            if not spec.get(name):
                raise _refused(f"{where}.{name}", "this field is required")
        provider = spec["provider"] if isinstance(spec["provider"], Provider) else providers.get(spec["provider"])
        if provider is None:
            raise _refused(f"{where}.provider", f"unknown provider {spec['provider']!r}")
        key = (provider.name, spec["upstream_model"])
        if key in seen:
            raise _refused(where, f"deployment {key[0]}/{key[1]} is listed twice")
        seen.add(key)
        existing = by_id.get(spec["id"]) if spec.get("id") is not None else by_key.get(key)
        if existing is not None:
            kept.add(existing.pk)
        plans.append((where, existing, provider, key[1], {n: spec[n] for n in DEPLOYMENT_FIELDS if n in spec}))
    changed = False
    # Deletions first: a row edited into the place of one that goes must not meet it.
    for row in rows:
        if row.pk not in kept:
            deployment_delete(deployment=row)
            changed = True
    for where, existing, provider, upstream_model, values in plans:
        try:
            if existing is None:
                deployment_create(logical_model=model, provider=provider, upstream_model=upstream_model, **values)
                changed = True
                continue
            moved = {"provider": provider, "upstream_model": upstream_model}
            updates = {n: v for n, v in {**moved, **values}.items() if getattr(existing, n) != v}
            if updates:
                deployment_update(deployment=existing, **updates)
                changed = True
        except ValidationFailed as exc:  # a refusal of one deployment, at its place in the list
            raise exc.within(where) from exc
    return changed


# --- rate-limit policies -----------------------------------------------------------------


# The column's shape (max_digits=12, decimal_places=4): at most 8 digits before the point.
BUDGET_PLACES = 4
BUDGET_DIGITS = 12
_BUDGET_QUANTUM = Decimal(1).scaleb(-BUDGET_PLACES)
_BUDGET_LIMIT = Decimal(10) ** (BUDGET_DIGITS - BUDGET_PLACES)


def budget_error(value: Any) -> str | None:
    """Why `value` cannot be a policy's `budget_usd` (None: it can). Every door words a bad
    budget with these messages: the API and documents call the services, the admin runs
    `rate_limit_policy_validate` on its form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "must be a number of USD, or empty for no budget"
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "must be a number of USD, or empty for no budget"
    if not number.is_finite():
        return "must be a number of USD, or empty for no budget"
    if number <= 0:
        return "must be above 0; leave it empty for no budget"
    if number >= _BUDGET_LIMIT:  # before quantize(), which cannot take numbers this large
        return f"at most {BUDGET_DIGITS} digits, {BUDGET_PLACES} of them after the point (below {_BUDGET_LIMIT:,.0f})"
    if number != number.quantize(_BUDGET_QUANTUM, rounding="ROUND_DOWN"):
        # Rounding would store a budget other than the one asked for: refuse instead.
        return f"at most {BUDGET_PLACES} decimal places"
    return None


def rate_limit_policy_validate(policy: RateLimitPolicy) -> None:
    """The rules of a rate-limit policy; raises ValidationFailed keyed by field. Every limit is
    optional: a policy that limits nothing is valid on purpose (an agent's empty policy exempts
    it from the default one), and so is one with only a spend budget."""
    policy.subject = (policy.subject or "").strip()
    errors: dict[str, str] = {}
    if policy.scope == RateLimitScope.DEFAULT and policy.subject:
        errors["subject"] = "the default policy has no subject"
    elif policy.scope != RateLimitScope.DEFAULT and not policy.subject:
        errors["subject"] = f"a {policy.scope} policy needs the {policy.scope} id"
    elif policy.scope == RateLimitScope.AGENT and unknown_agent_ids([policy.subject]):
        # A limit on a typo limits nobody and looks like it limits somebody. Without the
        # agents app no resolver is registered and every id is accepted (agent_directory).
        errors["subject"] = (
            f"no agent {policy.subject!r} in the registry (create the agent first, "
            "or list it under agents: in the same registry document)"
        )
    for attr in ("rpm", "tpm", "max_concurrent"):
        if getattr(policy, attr) == 0:
            errors[attr] = "0 would refuse every call; leave it empty for no limit"
    budget_problem = budget_error(policy.budget_usd)
    if budget_problem:
        errors["budget_usd"] = budget_problem
    elif policy.budget_usd is not None:
        policy.budget_usd = Decimal(str(policy.budget_usd)).quantize(_BUDGET_QUANTUM)  # exact: checked above
    if policy.budget_period not in BudgetPeriod.values:
        errors["budget_period"] = f"unknown period {policy.budget_period!r}; allowed: {', '.join(BudgetPeriod.values)}"
    if errors:
        raise ValidationFailed.on_fields(errors)
    validate_model(policy)


@transaction.atomic
def rate_limit_policy_create(
    *,
    scope: str,
    subject: str = "",
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrent: int | None = None,
    budget_usd: Decimal | int | float | str | None = None,
    budget_period: str = BudgetPeriod.MONTH,
    enabled: bool = True,
) -> RateLimitPolicy:
    policy = RateLimitPolicy(
        scope=scope,
        subject=subject,
        rpm=rpm,
        tpm=tpm,
        max_concurrent=max_concurrent,
        budget_usd=budget_usd,
        budget_period=budget_period,
        enabled=enabled,
    )
    rate_limit_policy_validate(policy)
    policy.save()
    bump_version(REGISTRY_CONFIG)
    return policy


@transaction.atomic
def rate_limit_policy_update(*, policy: RateLimitPolicy, **changes: Any) -> RateLimitPolicy:
    """Changes the limits (scope and subject name the policy: not among them)."""
    if model_update(
        instance=policy,
        fields=("rpm", "tpm", "max_concurrent", "budget_usd", "budget_period", "enabled"),
        data=changes,
        validate=rate_limit_policy_validate,
    ):
        bump_version(REGISTRY_CONFIG)
    return policy


@transaction.atomic
def rate_limit_policy_delete(*, policy: RateLimitPolicy) -> None:
    policy.delete()
    bump_version(REGISTRY_CONFIG)


@transaction.atomic
def rate_limit_policies_forget_agent(*, agent_id: str) -> list[RateLimitPolicy]:
    """Deletes the agent-scope policies of `agent_id` (the agent is being deleted), in the
    caller's transaction; returns them (unsaved copies, their pk gone). Each delete is in the
    change log like any policy delete, and the registry bump makes every process drop them.
    Microdao-scope and default policies are left alone."""
    doomed = list(RateLimitPolicy.objects.select_for_update().filter(scope=RateLimitScope.AGENT, subject=agent_id))
    for policy in doomed:
        policy.delete()
    if doomed:
        bump_version(REGISTRY_CONFIG)
    return doomed
