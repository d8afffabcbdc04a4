"""Whole-registry documents: export the registry, plan a document against it, apply it.

The document is the YAML/JSON shape `import_registry` reads (`providers:`, `models:`,
`rate_limits:`), extended with `tools:` (the `import_tools` items), `agents:` and
`mcp_servers:` (upstream MCP servers; their synced tools are theirs, not the `tools:` section's). Applying
one is a single transaction composed of the owning apps' services, so every rule, version
bump and change-log record holds exactly as through the admin. A section present in the
document is the whole truth about its objects: objects it does not name are deleted
(unless `prune=False`); a section left out is left alone. `export()` writes the shape back,
secrets left out, so `apply(export())` plans nothing but "unchanged".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSecret
from apps.llm import services as llm_services
from apps.llm.choices import BudgetPeriod, ProviderKind, RateLimitScope
from apps.llm.models import LogicalModel, Provider, RateLimitPolicy
from apps.llm.selectors import registry_export as llm_registry_export
from apps.registry.services import agent_secrets_apply, model_deployments_sync
from apps.tools import services as tool_services
from apps.tools.models import McpServer, Tool
from apps.access.audit import SECRET_MARK
from daarion.infra.errors import DaarionError, ValidationFailed

SECTIONS = ("providers", "models", "rate_limits", "tools", "agents", "mcp_servers")
Action = str  # create | update | delete | unchanged


# --- the plan ----------------------------------------------------------------------------


@dataclass
class PlanItem:
    type: str  # provider | model | rate_limit | tool | agent | mcp_server
    id: str
    path: str  # where the object sits in the document, e.g. models.gpt-4.1-mini
    action: Action
    changes: dict[str, list[Any]] = field(default_factory=dict)  # field -> [before, after]


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    def add(self, item: PlanItem) -> PlanItem:
        self.items.append(item)
        return item

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for item in self.items:
            counts[item.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "applied": self.applied,
            "summary": self.summary(),
            "changes": [asdict(item) for item in self.items],
        }

    def lines(self) -> list[str]:
        """One line per object that changes, then the counts: what the import command prints."""
        prefix = "would be " if self.dry_run else ""
        verbs = {"create": "created", "update": "updated", "delete": "deleted"}
        out = [f"{prefix}{verbs[i.action]}: {i.path}" for i in self.items if i.action in verbs]
        counts = self.summary()
        out.append(
            f"{'dry run: ' if self.dry_run else ''}{counts['create']} {prefix}created, {counts['update']} {prefix}updated, "
            f"{counts['unchanged']} unchanged, {counts['delete']} {prefix}deleted"
        )
        return out


# --- parsing (messages as import_registry words them) ------------------------------------


def _fail(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


def _expect(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise _fail(path, message)


def _mapping(value: Any, path: str) -> dict[str, Any]:
    _expect(isinstance(value, dict), path, f"expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    _expect(isinstance(value, list), path, f"expected a list, got {type(value).__name__}")
    return value


def _only(spec: dict[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    _expect(not unknown, path, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _int(value: Any, path: str, *, null: bool = False) -> int | None:
    if value is None and null:
        return None
    _expect(isinstance(value, int) and not isinstance(value, bool), path, "must be an integer")
    return value


def _float(value: Any, path: str) -> float:
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), path, "must be a number")
    return float(value)


def _bool(value: Any, path: str) -> bool:
    _expect(isinstance(value, bool), path, "must be true or false")
    return value


def _str(value: Any, path: str) -> str:
    _expect(isinstance(value, str), path, "must be a string")
    return value


def _decimal(value: Any, path: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _fail(path, f"{value!r} is not a number") from None
    _expect(number.is_finite() and not isinstance(value, bool), path, f"{value!r} is not a number")
    return number


@dataclass
class _Secret:
    """A secret named in a document: a literal value, or `{env: VAR}` (resolved only where
    allowed; elsewhere it only says "keep the stored one")."""

    value: str | None
    env: str | None = None


def _secret(spec: Any, path: str) -> _Secret:
    if isinstance(spec, str):
        return _Secret(value=spec)
    spec = _mapping(spec, path)
    _only(spec, path, {"env", "value"})
    _expect(len(spec) == 1, path, "give either env or value")
    if "value" in spec:
        return _Secret(value=_str(spec["value"], f"{path}.value"))
    return _Secret(value=None, env=_str(spec["env"], f"{path}.env"))


_PROVIDER_KEYS = {"kind", "base_url", "api_key", "api_key_env", "timeout", "timeout_seconds", "max_retries", "extra_headers", "enabled"}
_MODEL_KEYS = {"provider", "name", "deployments", "fallbacks", "context_window", "price", "input_price_per_mtok",
               "output_price_per_mtok", "can_embed", "enabled", "description", "weight", "rpm", "tpm",
               "drop_unsupported_params"}
_DEPLOYMENT_KEYS = {"provider", "name", "weight", "rpm", "tpm", "enabled"}
_POLICY_KEYS = {"scope", "subject", "rpm", "tpm", "max_concurrent", "budget_usd", "budget_period", "enabled"}
_TOOL_KEYS = {"id", *tool_services.TOOL_FIELDS, "secrets", "annotations"}
_AGENT_KEYS = {"id", *agent_services.EDITABLE_FIELDS, "secrets"}
_ANNOTATIONS = ("read_only", "destructive", "idempotent")
_MCP_SERVER_KEYS = {"name", *tool_services.MCP_SERVER_FIELDS, "headers"}


def _providers(raw: Any) -> dict[str, tuple[str, dict[str, Any], _Secret | None]]:
    out = {}
    for name, spec in _mapping(raw, "providers").items():
        path = f"providers.{name}"
        spec = _mapping(spec or {}, path)
        _only(spec, path, _PROVIDER_KEYS)
        kind = spec.get("kind")
        if kind is None:
            # The seed's file has no kind: a provider named after a kind is that kind.
            kind = name if name in ProviderKind.values else ProviderKind.OPENAI_COMPATIBLE
        base_url = _str(spec.get("base_url") or "", f"{path}.base_url")
        if not base_url and kind in llm_services.DEFAULT_BASE_URLS:
            base_url = llm_services.DEFAULT_BASE_URLS[kind]
        values = {
            "kind": _str(kind, f"{path}.kind"),
            "base_url": base_url.rstrip("/"),
            "api_key_env": _str(spec.get("api_key_env") or "", f"{path}.api_key_env"),
            "timeout_seconds": _float(
                spec.get("timeout_seconds", spec.get("timeout", 60.0)), f"{path}.{'timeout' if 'timeout' in spec else 'timeout_seconds'}"
            ),
            "max_retries": _int(spec.get("max_retries", 2), f"{path}.max_retries"),
            "extra_headers": _mapping(spec.get("extra_headers") or {}, f"{path}.extra_headers"),
            "enabled": _bool(spec.get("enabled", True), f"{path}.enabled"),
        }
        secret = _Secret(value=_str(spec["api_key"], f"{path}.api_key")) if spec.get("api_key") is not None else None
        out[str(name)] = (path, values, secret)
    return out


def _deployments(name: str, spec: dict[str, Any], path: str) -> list[dict[str, Any]]:
    if "deployments" in spec:
        _expect("provider" not in spec, path, "give either provider/name or deployments, not both")
        items = []
        for index, item in enumerate(_list(spec["deployments"], f"{path}.deployments")):
            dpath = f"{path}.deployments[{index}]"
            item = _mapping(item, dpath)
            _only(item, dpath, _DEPLOYMENT_KEYS)
            _expect("provider" in item, dpath, "needs a provider")
            items.append((dpath, item))
    else:
        _expect("provider" in spec, path, "needs a provider (or a deployments list)")
        items = [(path, {k: spec[k] for k in ("provider", "name", "weight", "rpm", "tpm") if k in spec})]
    return [
        {
            "path": dpath,
            "provider": _str(item["provider"], f"{dpath}.provider"),
            "upstream_model": _str(item.get("name") or name, f"{dpath}.name"),
            "weight": _int(item.get("weight", 1), f"{dpath}.weight"),
            "rpm_limit": _int(item.get("rpm"), f"{dpath}.rpm", null=True),
            "tpm_limit": _int(item.get("tpm"), f"{dpath}.tpm", null=True),
            "enabled": _bool(item.get("enabled", True), f"{dpath}.enabled"),
        }
        for dpath, item in items
    ]


def _models(raw: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for name, spec in _mapping(raw, "models").items():
        path = f"models.{name}"
        spec = _mapping(spec or {}, path)
        _only(spec, path, _MODEL_KEYS)
        price = _mapping(spec.get("price") or {}, f"{path}.price")
        fallbacks = _list(spec.get("fallbacks") or [], f"{path}.fallbacks")
        out[str(name)] = (path, {
            "description": _str(spec.get("description") or "", f"{path}.description"),
            "context_window": _int(spec.get("context_window", 8192), f"{path}.context_window"),
            "input_price_per_mtok": _decimal(spec.get("input_price_per_mtok", price.get("input", 0)), f"{path}.input_price_per_mtok"),
            "output_price_per_mtok": _decimal(spec.get("output_price_per_mtok", price.get("output", 0)), f"{path}.output_price_per_mtok"),
            "can_embed": _bool(spec.get("can_embed", False), f"{path}.can_embed"),
            "drop_unsupported_params": _bool(spec.get("drop_unsupported_params", False), f"{path}.drop_unsupported_params"),
            "enabled": _bool(spec.get("enabled", True), f"{path}.enabled"),
            "fallbacks": fallbacks,
            "deployments": _deployments(str(name), spec, path),
        })
    return out


def _policy_id(scope: str, subject: str) -> str:
    return f"{scope}:{subject}" if subject else scope


def _budget_values(spec: dict[str, Any]) -> dict[str, Any]:
    """A policy's budget fields. The export writes `budget_period` only beside a budget, so a
    policy without one leaves the stored period alone (apply(export()) changes nothing); a
    budget without a period is per month, the default."""
    values: dict[str, Any] = {"budget_usd": spec.get("budget_usd")}
    if "budget_period" in spec:
        values["budget_period"] = spec["budget_period"]
    elif values["budget_usd"] is not None:
        values["budget_period"] = BudgetPeriod.MONTH.value
    return values


def _policies(raw: Any) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for index, spec in enumerate(_list(raw, "rate_limits")):
        path = f"rate_limits[{index}]"
        spec = _mapping(spec, path)
        _only(spec, path, _POLICY_KEYS)
        scope = _str(spec.get("scope", RateLimitScope.DEFAULT), f"{path}.scope")
        subject = _str(spec.get("subject") or "", f"{path}.subject").strip()
        _expect((scope, subject) not in out, path, f"policy {_policy_id(scope, subject)} appears twice")
        budget = _budget_values(spec)
        if budget["budget_usd"] is not None:
            # The service's rule and words, here so the plan compares a Decimal with the row.
            problem = llm_services.budget_error(budget["budget_usd"])
            _expect(problem is None, f"{path}.budget_usd", problem or "")
            budget["budget_usd"] = _decimal(budget["budget_usd"], f"{path}.budget_usd")
        if "budget_period" in budget:
            budget["budget_period"] = _str(budget["budget_period"], f"{path}.budget_period")
        out[(scope, subject)] = (path, {
            **{k: _int(spec.get(k), f"{path}.{k}", null=True) for k in ("rpm", "tpm", "max_concurrent")},
            **budget,
            "enabled": _bool(spec.get("enabled", True), f"{path}.enabled"),
        })
    return out


def _secrets_map(raw: Any, path: str) -> dict[str, _Secret]:
    return {str(name): _secret(spec, f"{path}.{name}") for name, spec in _mapping(raw, path).items()}


def _tools(raw: Any) -> dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]]:
    out: dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]] = {}
    for index, item in enumerate(_list(raw, "tools")):
        path = f"tools[{index}]"
        item = _mapping(item, path)
        tool_id = item.get("id")
        _expect(isinstance(tool_id, str) and bool(tool_id), f"{path}.id", "required (a string like projects.list)")
        _only(item, path, _TOOL_KEYS)
        _expect(tool_id not in out, f"{path}.id", f"{tool_id!r} appears twice in the document")
        annotations = _mapping(item.get("annotations") or {}, f"{path}.annotations")
        _only(annotations, f"{path}.annotations", set(_ANNOTATIONS))
        allowed = item.get("allowed_agents")
        values = {
            "name": item.get("name", ""),
            "description": item.get("description", ""),
            "input_schema": item.get("input_schema", {}),
            "output_schema": item.get("output_schema"),
            "executor": item.get("executor", ""),
            "target": item.get("target", ""),
            # The service stores allowed agents sorted and distinct: compare them that way.
            "allowed_agents": sorted({a.strip() for a in allowed if isinstance(a, str) and a.strip()})
            if isinstance(allowed, list) and all(isinstance(a, str) for a in allowed) else allowed,
            "timeout": item.get("timeout", 10.0),
            "enabled": item.get("enabled", True),
            "rate_limit_per_minute": item.get("rate_limit_per_minute"),
            # {header: agent secret name}: names only, so it travels in documents as it is.
            "agent_secret_headers": item.get("agent_secret_headers") or {},
            **{name: annotations.get(name, item.get(name, False)) for name in _ANNOTATIONS},
        }
        secrets = _secrets_map(item["secrets"], f"{path}.secrets") if item.get("secrets") is not None else None
        out[tool_id] = (path, values, secrets)
    return out


def _mcp_servers(raw: Any) -> dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]]:
    out: dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]] = {}
    for index, item in enumerate(_list(raw, "mcp_servers")):
        path = f"mcp_servers[{index}]"
        item = _mapping(item, path)
        name = item.get("name")
        _expect(isinstance(name, str) and bool(name), f"{path}.name", "required (a name like weather)")
        _only(item, path, _MCP_SERVER_KEYS)
        _expect(name not in out, f"{path}.name", f"{name!r} appears twice in the document")
        _expect("url" in item, f"{path}.url", "required")
        allowed = item.get("allowed_agents")
        values = {
            "url": item["url"],
            "transport": item.get("transport", "streamable_http"),
            "prefix": item.get("prefix", name),
            "description": item.get("description", ""),
            "allowed_agents": sorted({a.strip() for a in allowed if isinstance(a, str) and a.strip()})
            if isinstance(allowed, list) and all(isinstance(a, str) for a in allowed) else allowed,
            "timeout": item.get("timeout", 30.0),
            "enabled": item.get("enabled", True),
            "agent_secret_headers": item.get("agent_secret_headers") or {},
        }
        secrets = _secrets_map(item["headers"], f"{path}.headers") if item.get("headers") is not None else None
        out[name] = (path, values, secrets)
    return out


_AGENT_DEFAULTS = {
    "system_prompt": "", "character": {}, "enabled": True, "memory_recall_limit": 5, "memory_kinds": [],
    "max_tool_steps": 4, "tool_mode": "native", "temperature": None, "history_turns": 10, "history_tokens": 4000,
}


def _agents(raw: Any) -> dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]]:
    out: dict[str, tuple[str, dict[str, Any], dict[str, _Secret] | None]] = {}
    for index, item in enumerate(_list(raw, "agents")):
        path = f"agents[{index}]"
        item = _mapping(item, path)
        agent_id = item.get("id")
        _expect(isinstance(agent_id, str) and bool(agent_id), f"{path}.id", "required (an id like agent:sofia)")
        _only(item, path, _AGENT_KEYS)
        _expect(agent_id not in out, f"{path}.id", f"{agent_id!r} appears twice in the document")
        for name in ("name", "microdao_id", "model"):
            _expect(name in item, f"{path}.{name}", "required")
        values = {name: item.get(name, _AGENT_DEFAULTS.get(name)) for name in agent_services.EDITABLE_FIELDS}
        secrets = _secrets_map(item["secrets"], f"{path}.secrets") if item.get("secrets") is not None else None
        out[agent_id] = (path, values, secrets)
    return out


@dataclass
class _Desired:
    sections: set[str]
    providers: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    rate_limits: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    agents: dict = field(default_factory=dict)
    mcp_servers: dict = field(default_factory=dict)


def parse(document: Any) -> _Desired:
    root = _mapping(document, "(root)")
    _only(root, "(root)", set(SECTIONS))
    desired = _Desired(sections={name for name in SECTIONS if name in root})
    desired.providers = _providers(root.get("providers") or {})
    desired.models = _models(root.get("models") or {})
    desired.rate_limits = _policies(root.get("rate_limits") or [])
    desired.tools = _tools(root.get("tools") or [])
    desired.agents = _agents(root.get("agents") or [])
    desired.mcp_servers = _mcp_servers(root.get("mcp_servers") or [])
    return desired


# --- applying ----------------------------------------------------------------------------


@contextmanager
def _at(path: str, aliases: dict[str, str] | None = None) -> Iterator[None]:
    """Names the document path in any refusal a service raises."""
    try:
        yield
    except ValidationFailed as exc:
        raise exc.within(path, aliases) from exc
    except DaarionError as exc:
        exc.message = f"{path}: {exc.message}"
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _diff(current: Any, values: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [_jsonable(getattr(current, name)), _jsonable(value)]
        for name, value in values.items()
        if getattr(current, name) != value
    }


def _secret_value(secret: _Secret, path: str, *, stored: bool, resolve_env: bool, environ: dict[str, str]) -> str | None:
    """The value to store, or None to keep what is stored."""
    if secret.value is not None:
        return secret.value
    if resolve_env and environ.get(secret.env or ""):
        return environ[secret.env or ""]
    if stored:
        return None  # `{env: ...}` that cannot be (or may not be) resolved: keep the stored one
    if resolve_env:
        raise _fail(path, f"environment variable {secret.env} is not set")
    raise _fail(path, "no such secret is stored; send {value: ...} (environment references are resolved only by the import command)")


def _apply_providers(desired: _Desired, plan: Plan, opts: dict[str, Any]) -> None:
    current = {p.name: p for p in Provider.objects.all()}
    for name, (path, values, secret) in desired.providers.items():
        existing = current.get(name)
        api_key = None
        if secret is not None:
            api_key = _secret_value(secret, f"{path}.api_key", stored=bool(existing and existing.api_key), **opts)
        with _at(path):
            if existing is None:
                llm_services.provider_create(name=name, api_key=api_key or "", **values)
                changes = {k: [None, v] for k, v in values.items()}
                if api_key:
                    changes["api_key"] = [None, SECRET_MARK]
                plan.add(PlanItem("provider", name, path, "create", changes))
                continue
            changes = _diff(existing, values)
            if api_key is not None and api_key != existing.api_key:
                changes["api_key"] = [SECRET_MARK if existing.api_key else None, SECRET_MARK if api_key else None]
            else:
                api_key = None
            if changes:
                llm_services.provider_update(provider=existing, api_key=api_key, **{k: values[k] for k in changes if k in values})
            plan.add(PlanItem("provider", name, path, "update" if changes else "unchanged", changes))


def _deployment_rows(model: LogicalModel) -> list[dict[str, Any]]:
    return [
        {"provider": d.provider.name, "upstream_model": d.upstream_model, "weight": d.weight,
         "rpm_limit": d.rpm_limit, "tpm_limit": d.tpm_limit, "enabled": d.enabled}
        for d in model.deployments.select_related("provider").order_by("id")
    ]


def _apply_models(desired: _Desired, plan: Plan) -> None:
    current = {m.name: m for m in LogicalModel.objects.all()}
    items: dict[str, PlanItem] = {}
    for name, (path, values) in desired.models.items():
        scalars = {k: v for k, v in values.items() if k not in ("fallbacks", "deployments")}
        existing = current.get(name)
        with _at(path):
            if existing is None:
                existing = llm_services.logical_model_create(name=name, **scalars)
                changes = {k: [None, _jsonable(v)] for k, v in scalars.items()}
                item = PlanItem("model", name, path, "create", changes)
            else:
                changes = _diff(existing, scalars)
                if changes:
                    llm_services.logical_model_update(model=existing, **{k: scalars[k] for k in changes})
                item = PlanItem("model", name, path, "update", changes)
        known = set(Provider.objects.filter(name__in=[d["provider"] for d in values["deployments"]]).values_list("name", flat=True))
        for deployment in values["deployments"]:
            _expect(deployment["provider"] in known, f"{deployment['path']}.provider", f"unknown provider {deployment['provider']!r}")
        wanted = [{k: v for k, v in d.items() if k != "path"} for d in values["deployments"]]
        before = _deployment_rows(existing)
        key = lambda d: (d["provider"], d["upstream_model"])  # noqa: E731
        if sorted(before, key=key) != sorted(wanted, key=key):
            model_deployments_sync(model=existing, deployments=wanted, path=f"{path}.deployments")
            item.changes["deployments"] = [before if item.action != "create" else None, wanted]
        items[name] = plan.add(item)
    # Fallbacks once every model exists. Changed chains are cleared first, so no step in
    # between can form a loop that the final graph does not have.
    fresh = {m.name: m for m in LogicalModel.objects.filter(name__in=list(desired.models))}
    changing = [n for n, (_p, v) in desired.models.items() if list(fresh[n].fallbacks or []) != v["fallbacks"]]
    for name in changing:
        if fresh[name].fallbacks:
            with _at(f"{desired.models[name][0]}.fallbacks"):
                llm_services.logical_model_update(model=fresh[name], fallbacks=[])
    for name in changing:
        path, values = desired.models[name]
        before = list(current[name].fallbacks or []) if name in current else None
        if values["fallbacks"]:
            with _at(path):
                llm_services.logical_model_update(model=fresh[name], fallbacks=values["fallbacks"])
        if before != values["fallbacks"] and not (before is None and not values["fallbacks"]):
            items[name].changes["fallbacks"] = [before, values["fallbacks"]]
    for item in items.values():
        if item.action == "update" and not item.changes:
            item.action = "unchanged"


def _apply_policies(desired: _Desired, plan: Plan) -> None:
    current = {(p.scope, p.subject): p for p in RateLimitPolicy.objects.all()}
    for (scope, subject), (path, values) in desired.rate_limits.items():
        existing = current.get((scope, subject))
        with _at(path):
            if existing is None:
                llm_services.rate_limit_policy_create(scope=scope, subject=subject, **values)
                plan.add(PlanItem("rate_limit", _policy_id(scope, subject), path, "create",
                                  {k: [None, v] for k, v in {"scope": scope, "subject": subject, **values}.items()}))
                continue
            changes = _diff(existing, values)
            if changes:
                llm_services.rate_limit_policy_update(policy=existing, **{k: values[k] for k in changes})
            plan.add(PlanItem("rate_limit", _policy_id(scope, subject), path, "update" if changes else "unchanged", changes))


def _secret_changes(stored: dict[str, str], secrets: dict[str, _Secret] | None, path: str, opts: dict[str, Any],
                    key: str = "secrets") -> dict[str, str]:
    """The named secrets whose value must be written (unchanged and kept ones left out)."""
    writes: dict[str, str] = {}
    for name, secret in (secrets or {}).items():
        value = _secret_value(secret, f"{path}.{key}.{name}", stored=name in stored, **opts)
        if value is not None and stored.get(name) != value:
            writes[name] = value
    return writes


def _apply_tools(desired: _Desired, plan: Plan, opts: dict[str, Any]) -> None:
    current = {t.tool_id: t for t in Tool.objects.all()}
    for tool_id, (path, values, secrets) in desired.tools.items():
        existing = current.get(tool_id)
        stored = json.loads(existing.secret_headers) if existing is not None and existing.secret_headers else {}
        writes = _secret_changes(stored, secrets, path, opts)
        with _at(path, aliases={"tool_id": "id"}):
            if existing is None:
                tool_services.tool_create(tool_id=tool_id, secret_headers=writes or None, **values)
                changes = {k: [None, v] for k, v in values.items()}
                changes.update({f"secrets.{n}": [None, SECRET_MARK] for n in writes})
                plan.add(PlanItem("tool", tool_id, path, "create", changes))
                continue
            changes = _diff(existing, values)
            changes.update({f"secrets.{n}": [SECRET_MARK if n in stored else None, SECRET_MARK] for n in writes})
            if changes:
                tool_services.tool_update(tool=existing, secret_headers=writes or None,
                                          **{k: values[k] for k in changes if k in values})
            plan.add(PlanItem("tool", tool_id, path, "update" if changes else "unchanged", changes))


def _apply_mcp_servers(desired: _Desired, plan: Plan, opts: dict[str, Any]) -> None:
    current = {m.name: m for m in McpServer.objects.all()}
    for name, (path, values, secrets) in desired.mcp_servers.items():
        existing = current.get(name)
        stored = json.loads(existing.secret_headers) if existing is not None and existing.secret_headers else {}
        writes = _secret_changes(stored, secrets, path, opts, key="headers")
        with _at(path, aliases={"secret_headers": "headers"}):
            if existing is None:
                tool_services.mcp_server_create(name=name, secret_headers=writes or None, **values)
                changes = {k: [None, v] for k, v in values.items()}
                changes.update({f"headers.{n}": [None, SECRET_MARK] for n in writes})
                plan.add(PlanItem("mcp_server", name, path, "create", changes))
                continue
            changes = _diff(existing, values)
            changes.update({f"headers.{n}": [SECRET_MARK if n in stored else None, SECRET_MARK] for n in writes})
            if changes:
                tool_services.mcp_server_update(server=existing, secret_headers=writes or None,
                                                **{k: values[k] for k in changes if k in values})
            plan.add(PlanItem("mcp_server", name, path, "update" if changes else "unchanged", changes))


def _apply_agents(desired: _Desired, plan: Plan, opts: dict[str, Any]) -> None:
    current = {a.id: a for a in Agent.objects.all()}
    stored_all: dict[str, dict[str, str]] = {}
    for secret in AgentSecret.objects.filter(agent_id__in=list(desired.agents)):
        stored_all.setdefault(secret.agent_id, {})[secret.name] = secret.value
    for agent_id, (path, values, secrets) in desired.agents.items():
        existing = current.get(agent_id)
        stored = stored_all.get(agent_id, {})
        writes = _secret_changes(stored, secrets, path, opts)
        with _at(path):
            if existing is None:
                agent = agent_services.agent_create(agent_id=agent_id, **values)
                changes = {k: [None, v] for k, v in values.items()}
                action = "create"
            else:
                changes = _diff(existing, values)
                agent = agent_services.agent_update(agent=existing, **{k: values[k] for k in changes}) if changes else existing
                action = "update"
            if writes:
                agent_secrets_apply(agent=agent, secrets=writes)
                changes.update({f"secrets.{n}": [SECRET_MARK if n in stored else None, SECRET_MARK] for n in writes})
        plan.add(PlanItem("agent", agent_id, path, action if action == "create" or changes else "unchanged", changes))


def _prune(desired: _Desired, plan: Plan) -> None:
    """Deletes what a present section does not name: dependants before what they depend on
    (tools and agent policies name agents, agents name models, models name providers)."""
    if "tools" in desired.sections:
        # Tools of an MCP server belong to its sync (and to the mcp_servers section).
        for tool in Tool.objects.filter(mcp_server__isnull=True).exclude(tool_id__in=list(desired.tools)):
            with _at(f"tools.{tool.tool_id}"):
                tool_services.tool_delete(tool=tool)
            plan.add(PlanItem("tool", tool.tool_id, f"tools.{tool.tool_id}", "delete"))
    if "mcp_servers" in desired.sections:
        for server in McpServer.objects.exclude(name__in=list(desired.mcp_servers)):
            name = server.name
            with _at(f"mcp_servers.{name}"):
                kept = tool_services.mcp_server_delete(server=server)
            plan.add(PlanItem("mcp_server", name, f"mcp_servers.{name}", "delete", {"tools_disabled": [None, kept]}))
    if "rate_limits" in desired.sections:
        for policy in RateLimitPolicy.objects.all():
            if (policy.scope, policy.subject) not in desired.rate_limits:
                policy_id = _policy_id(policy.scope, policy.subject)
                with _at(f"rate_limits.{policy_id}"):
                    llm_services.rate_limit_policy_delete(policy=policy)
                plan.add(PlanItem("rate_limit", policy_id, f"rate_limits.{policy_id}", "delete"))
    if "agents" in desired.sections:
        narrowed: dict[str, PlanItem] = {}
        for agent in Agent.objects.exclude(id__in=list(desired.agents)):
            agent_id = agent.id  # a deleted row's pk becomes None
            # Deleting an agent takes it out of every tool's list; a tool of this document
            # that still names it would then not be what the document says.
            for path, values, _secrets in desired.tools.values():
                _expect(agent_id not in (values["allowed_agents"] or []), f"{path}.allowed_agents",
                        f"agent {agent_id!r} is deleted by this document (it is not under agents:); "
                        "take it out of this list or keep the agent")
            # Likewise its policies go with it: a policy of this document for it cannot stay.
            policy_path = desired.rate_limits.get((RateLimitScope.AGENT.value, agent_id), (None,))[0]
            _expect(policy_path is None, f"{policy_path}.subject",
                    f"agent {agent_id!r} is deleted by this document (it is not under agents:); "
                    "take this policy out or keep the agent")
            policies = [_policy_id(p.scope, p.subject) for p in
                        RateLimitPolicy.objects.filter(scope=RateLimitScope.AGENT, subject=agent_id)]
            with _at(f"agents.{agent_id}"):
                forgotten = agent_services.agent_delete(agent=agent)
            plan.add(PlanItem("agent", agent_id, f"agents.{agent_id}", "delete"))
            # Its agent policies are deleted with it (left alone by the rate_limits section,
            # or the section is not in the document): one plan item each.
            for policy_id in policies:
                plan.add(PlanItem("rate_limit", policy_id, f"rate_limits.{policy_id}", "delete"))
            # Tools the document leaves alone lose the agent too: one plan item per tool.
            for tool in Tool.objects.filter(tool_id__in=forgotten).order_by("tool_id"):
                item = narrowed.get(tool.tool_id)
                if item is None:
                    before = sorted([*tool.allowed_agents, agent_id])
                    item = narrowed[tool.tool_id] = plan.add(
                        PlanItem("tool", tool.tool_id, f"tools.{tool.tool_id}", "update", {"allowed_agents": [before, None]}))
                item.changes["allowed_agents"][1] = tool.allowed_agents
    if "models" in desired.sections:
        doomed = list(LogicalModel.objects.exclude(name__in=list(desired.models)))
        # A doomed model may be another doomed model's fallback: drop those links first.
        for model in doomed:
            if model.fallbacks:
                llm_services.logical_model_update(model=model, fallbacks=[])
        for model in doomed:
            with _at(f"models.{model.name}"):
                llm_services.logical_model_delete(model=model)
            plan.add(PlanItem("model", model.name, f"models.{model.name}", "delete"))
    if "providers" in desired.sections:
        for provider in Provider.objects.exclude(name__in=list(desired.providers)):
            with _at(f"providers.{provider.name}"):
                llm_services.provider_delete(provider=provider)
            plan.add(PlanItem("provider", provider.name, f"providers.{provider.name}", "delete"))


def registry_apply(
    *,
    document: Any,
    dry_run: bool = False,
    prune: bool = True,
    resolve_env: bool = False,
    environ: dict[str, str] | None = None,
) -> Plan:
    """Applies a registry document in one transaction and returns the plan it carried out.

    `dry_run` runs every service (so every rule is checked) and rolls back: the plan is
    exact and nothing changes. `resolve_env` lets `{env: VAR}` secrets read this process's
    environment (the import command); over the API they only mean "keep the stored one", so
    a caller cannot copy the server's environment into a tool's headers.
    """
    desired = parse(document)
    plan = Plan(dry_run=dry_run)
    opts = {"resolve_env": resolve_env, "environ": dict(os.environ) if environ is None else environ}
    with transaction.atomic():
        _apply_providers(desired, plan, opts)
        _apply_models(desired, plan)
        # Agents before policies and tools: an agent policy's subject and a tool's
        # allowed_agents must name agents that exist, and the document's own agents count.
        # Nothing of an agent refers to a policy or a tool.
        _apply_agents(desired, plan, opts)
        _apply_policies(desired, plan)
        _apply_tools(desired, plan, opts)
        _apply_mcp_servers(desired, plan, opts)
        if prune:
            _prune(desired, plan)
        if dry_run:
            transaction.set_rollback(True)
    plan.applied = not dry_run
    return plan


# --- export ------------------------------------------------------------------------------


def _env_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Z0-9]", "_", part.upper()) for part in parts)


def _agents_export() -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {}
    for agent_id, name in AgentSecret.objects.order_by("agent_id", "name").values_list("agent_id", "name"):
        names.setdefault(agent_id, []).append(name)
    out = []
    for agent in Agent.objects.order_by("id"):
        item: dict[str, Any] = {"id": agent.id, **{name: getattr(agent, name) for name in agent_services.EDITABLE_FIELDS}}
        if agent.id in names:
            # Names only: each says which variable the import command reads the value from.
            item["secrets"] = {n: {"env": _env_name("AGENT_SECRET", agent.id.split(":", 1)[-1], n)} for n in names[agent.id]}
        out.append(item)
    return out


def registry_export(sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """The registry as a document (secret values never; their names as env refs), every
    section unless `sections` names some."""
    data: dict[str, Any] = {}
    if {"providers", "models", "rate_limits"} & set(sections):
        data = llm_registry_export()
        data.setdefault("rate_limits", [])
    if "tools" in sections:
        data["tools"] = tool_services.tools_export()["tools"]
    if "agents" in sections:
        data["agents"] = _agents_export()
    if "mcp_servers" in sections:
        data["mcp_servers"] = tool_services.mcp_servers_export()
    return {name: data[name] for name in SECTIONS if name in sections}
