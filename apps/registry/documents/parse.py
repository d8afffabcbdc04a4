"""Reading a registry document: its shape checked by the pydantic models (documents/models.py),
each problem a `{path, message}` detail in the document's own terms (`models.m.deployments[0].rpm`),
then the values the services take, with the defaults the sections promise."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pydantic

from apps.agents import services as agent_services
from apps.llm import services as llm_services
from apps.llm.choices import BudgetPeriod, ProviderKind
from apps.registry.documents.models import (
    SECTIONS,
    AgentDoc,
    Document,
    McpServerDoc,
    ModelDoc,
    PolicyDoc,
    ProviderDoc,
    Secret,
    ToolDoc,
)
from daarion.infra.errors import ValidationFailed

# What a section holds once read: {key: (path, values for the services, secrets or None)}.
Entries = dict[Any, tuple[Any, ...]]


@dataclass
class Desired:
    sections: set[str]
    providers: Entries = field(default_factory=dict)
    models: Entries = field(default_factory=dict)
    rate_limits: Entries = field(default_factory=dict)
    tools: Entries = field(default_factory=dict)
    agents: Entries = field(default_factory=dict)
    mcp_servers: Entries = field(default_factory=dict)


def refusal(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


def expect(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise refusal(path, message)


# --- pydantic's errors in the document's words --------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


_MESSAGES = {
    "missing": "required",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
}


def _message(error: Any) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in ("dict_type", "model_type"):
        return f"expected a mapping, got {type(error['input']).__name__}"
    if kind == "list_type":
        return f"expected a list, got {type(error['input']).__name__}"
    if kind.startswith("decimal_") or kind == "finite_number":
        return f"{error['input']!r} is not a number"
    return error["msg"]


def shape_details(exc: pydantic.ValidationError) -> list[dict[str, str]]:
    """One `{path, message}` per problem pydantic found, paths as the document spells them."""
    details: list[dict[str, str]] = []
    for error in exc.errors(include_url=False):
        detail = {"path": _path(error["loc"]), "message": _message(error)}
        if detail not in details:
            details.append(detail)
    return details


def _read(document: Any) -> Document:
    try:
        return Document.model_validate(document)
    except pydantic.ValidationError as exc:
        details = shape_details(exc)
        raise ValidationFailed("; ".join(f"{d['path']}: {d['message']}" for d in details), details=details) from None


# --- the values each section gives the services -------------------------------------------


def _secrets(raw: dict[str, Secret] | None) -> dict[str, Secret] | None:
    return None if raw is None else {str(name): secret for name, secret in raw.items()}


def _allowed(value: Any) -> Any:
    # The services store allowed agents sorted and distinct: compare them that way.
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return sorted({a.strip() for a in value if a.strip()})
    return value


def _provider(name: str, spec: ProviderDoc) -> tuple[dict[str, Any], Secret | None]:
    # The seed's file has no kind: a provider named after a kind is that kind.
    kind = spec.kind if spec.kind is not None else (name if name in ProviderKind.values else ProviderKind.OPENAI_COMPATIBLE)
    base_url = spec.base_url or llm_services.DEFAULT_BASE_URLS.get(kind, "")
    given = spec.model_fields_set
    timeout = spec.timeout_seconds if "timeout_seconds" in given or "timeout" not in given else spec.timeout
    values = {
        "kind": str(kind),
        "base_url": base_url.rstrip("/"),
        "api_key_env": spec.api_key_env or "",
        "timeout_seconds": float(timeout),
        "max_retries": spec.max_retries,
        "extra_headers": spec.extra_headers or {},
        "enabled": spec.enabled,
    }
    return values, (Secret(value=spec.api_key) if spec.api_key is not None else None)


def _model(name: str, spec: ModelDoc, path: str) -> dict[str, Any]:
    deployments: list[tuple[str, str | None, str | None, int, int | None, int | None, bool]]
    if spec.deployments is not None:
        deployments = [
            (f"{path}.deployments[{i}]", d.provider, d.name, d.weight, d.rpm, d.tpm, d.enabled)
            for i, d in enumerate(spec.deployments)
        ]
    else:
        deployments = [(path, spec.provider, spec.name, spec.weight, spec.rpm, spec.tpm, True)]
    price = spec.price
    return {
        "description": spec.description or "",
        "context_window": spec.context_window,
        "input_price_per_mtok": _price(spec.input_price_per_mtok, price.input if price else None),
        "output_price_per_mtok": _price(spec.output_price_per_mtok, price.output if price else None),
        "can_embed": spec.can_embed,
        "drop_unsupported_params": spec.drop_unsupported_params,
        "enabled": spec.enabled,
        "fallbacks": list(spec.fallbacks or []),
        "deployments": [
            {
                "path": where,
                "provider": provider,
                "upstream_model": upstream or name,
                "weight": weight,
                "rpm_limit": rpm,
                "tpm_limit": tpm,
                "enabled": enabled,
            }
            for where, provider, upstream, weight, rpm, tpm, enabled in deployments
        ],
    }


def _price(own: Decimal | None, in_price: Decimal | None) -> Decimal:
    return own if own is not None else (in_price if in_price is not None else Decimal(0))


def policy_id(scope: str, subject: str) -> str:
    return f"{scope}:{subject}" if subject else scope


def _policy(spec: PolicyDoc, path: str) -> dict[str, Any]:
    # The export writes `budget_period` only beside a budget, so a policy without one leaves
    # the stored period alone (apply(export()) changes nothing); a budget without a period is
    # per month, the default.
    budget: dict[str, Any] = {"budget_usd": spec.budget_usd}
    if "budget_period" in spec.model_fields_set:
        expect(spec.budget_period is not None, f"{path}.budget_period", "must be a string")
        budget["budget_period"] = spec.budget_period
    elif spec.budget_usd is not None:
        budget["budget_period"] = BudgetPeriod.MONTH.value
    if spec.budget_usd is not None:
        # The service's rule and words, here so the plan compares a Decimal with the row.
        problem = llm_services.budget_error(spec.budget_usd)
        expect(problem is None, f"{path}.budget_usd", problem or "")
        budget["budget_usd"] = Decimal(str(spec.budget_usd))
    return {"rpm": spec.rpm, "tpm": spec.tpm, "max_concurrent": spec.max_concurrent, **budget, "enabled": spec.enabled}


_ANNOTATIONS = ("read_only", "destructive", "idempotent")


def _tool(spec: ToolDoc) -> dict[str, Any]:
    annotations = spec.annotations.model_dump(exclude_unset=True) if spec.annotations else {}
    return {
        "name": spec.name,
        "description": spec.description,
        "input_schema": spec.input_schema,
        "output_schema": spec.output_schema,
        "executor": spec.executor,
        "target": spec.target,
        "allowed_agents": _allowed(spec.allowed_agents),
        "timeout": spec.timeout,
        "enabled": spec.enabled,
        "rate_limit_per_minute": spec.rate_limit_per_minute,
        "agent_secret_headers": spec.agent_secret_headers or {},
        **{name: annotations.get(name, getattr(spec, name)) for name in _ANNOTATIONS},
    }


def _mcp_server(spec: McpServerDoc) -> dict[str, Any]:
    return {
        "url": spec.url,
        "transport": spec.transport,
        "prefix": spec.prefix if "prefix" in spec.model_fields_set else spec.name,
        "description": spec.description,
        "allowed_agents": _allowed(spec.allowed_agents),
        "timeout": spec.timeout,
        "enabled": spec.enabled,
        "agent_secret_headers": spec.agent_secret_headers or {},
    }


def _agent(spec: AgentDoc) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in agent_services.EDITABLE_FIELDS}


def _keyed(items: list[Any], section: str, key: str) -> dict[str, tuple[str, Any]]:
    """The items of a list section by their id, each with its path; an id twice is refused."""
    out: dict[str, tuple[str, Any]] = {}
    for index, item in enumerate(items):
        path = f"{section}[{index}]"
        value = getattr(item, key)
        expect(value not in out, f"{path}.{key}", f"{value!r} appears twice in the document")
        out[value] = (path, item)
    return out


def parse(document: Any) -> Desired:
    """The document read into the values the services take, or ValidationFailed naming every
    shape problem at its path."""
    doc = _read(document)
    desired = Desired(sections={name for name in SECTIONS if name in doc.model_fields_set})
    for name, provider in (doc.providers or {}).items():
        desired.providers[str(name)] = (f"providers.{name}", *_provider(str(name), provider))
    for name, model in (doc.models or {}).items():
        desired.models[str(name)] = (f"models.{name}", _model(str(name), model, f"models.{name}"))
    for index, policy in enumerate(doc.rate_limits or []):
        path = f"rate_limits[{index}]"
        key = (policy.scope, (policy.subject or "").strip())
        expect(key not in desired.rate_limits, path, f"policy {policy_id(*key)} appears twice")
        desired.rate_limits[key] = (path, _policy(policy, path))
    for tool_id, (path, spec) in _keyed(doc.tools or [], "tools", "id").items():
        desired.tools[tool_id] = (path, _tool(spec), _secrets(spec.secrets))
    for agent_id, (path, spec) in _keyed(doc.agents or [], "agents", "id").items():
        desired.agents[agent_id] = (path, _agent(spec), _secrets(spec.secrets))
    for name, (path, spec) in _keyed(doc.mcp_servers or [], "mcp_servers", "name").items():
        desired.mcp_servers[name] = (path, _mcp_server(spec), _secrets(spec.headers))
    return desired
