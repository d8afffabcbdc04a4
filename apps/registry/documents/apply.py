"""Applying a registry document: one transaction composed of the owning apps' services, so
every rule, version bump and change-log record holds exactly as through the admin."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import transaction

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSecret
from apps.llm import services as llm_services
from apps.llm.choices import RateLimitScope
from apps.llm.models import LogicalModel, Provider, RateLimitPolicy
from apps.registry.documents.models import Secret
from apps.registry.documents.parse import Desired, expect, parse, policy_id, refusal
from apps.registry.documents.plan import Plan, PlanItem
from apps.registry.services import agent_secrets_apply
from apps.tools import services as tool_services
from apps.tools.models import McpServer, Tool
from apps.access.audit import SECRET_MARK
from daarion.infra.errors import DaarionError, ValidationFailed


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


def _secret_value(secret: Secret, path: str, *, stored: bool, resolve_env: bool, environ: dict[str, str]) -> str | None:
    """The value to store, or None to keep what is stored."""
    if secret.value is not None:
        return secret.value
    if resolve_env and environ.get(secret.env or ""):
        return environ[secret.env or ""]
    if stored:
        return None  # `{env: ...}` that cannot be (or may not be) resolved: keep the stored one
    if resolve_env:
        raise refusal(path, f"environment variable {secret.env} is not set")
    raise refusal(
        path, "no such secret is stored; send {value: ...} (environment references are resolved only by the import command)"
    )


def _apply_providers(desired: Desired, plan: Plan, opts: dict[str, Any]) -> None:
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
        {
            "provider": d.provider.name,
            "upstream_model": d.upstream_model,
            "weight": d.weight,
            "rpm_limit": d.rpm_limit,
            "tpm_limit": d.tpm_limit,
            "enabled": d.enabled,
        }
        for d in model.deployments.select_related("provider").order_by("id")
    ]


# The service's field names for a deployment, as a document spells them.
_DEPLOYMENT_KEYS = {"upstream_model": "name", "rpm_limit": "rpm", "tpm_limit": "tpm"}


def _at_deployments(exc: ValidationFailed, paths: list[str]) -> ValidationFailed:
    """A refusal of the deployment sync (paths `[index].field`) at each deployment's place in
    the document: `models.m.deployments[1].rpm`, or `models.m.rpm` for the short form."""
    details = []
    for detail in exc.details if isinstance(exc.details, list) else []:
        found = re.match(r"^\[(\d+)\](?:\.(.+))?$", detail.get("path", ""))
        where = paths[int(found.group(1))] if found and int(found.group(1)) < len(paths) else ""
        name = _DEPLOYMENT_KEYS.get(found.group(2), found.group(2)) if found and found.group(2) else ""
        details.append({"path": ".".join(p for p in (where, name) if p), "message": detail.get("message", "")})
    details = details or [{"path": paths[0] if paths else "", "message": exc.message}]
    return ValidationFailed("; ".join(f"{d['path']}: {d['message']}" for d in details), details=details)


def _apply_models(desired: Desired, plan: Plan) -> None:
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
        known = set(
            Provider.objects.filter(name__in=[d["provider"] for d in values["deployments"]]).values_list("name", flat=True)
        )
        for deployment in values["deployments"]:
            expect(
                deployment["provider"] in known, f"{deployment['path']}.provider", f"unknown provider {deployment['provider']!r}"
            )
        wanted = [{k: v for k, v in d.items() if k != "path"} for d in values["deployments"]]
        before = _deployment_rows(existing)
        key = lambda d: (d["provider"], d["upstream_model"])  # noqa: E731
        if sorted(before, key=key) != sorted(wanted, key=key):
            try:
                llm_services.logical_model_deployments_sync(model=existing, deployments=wanted, path="")
            except ValidationFailed as exc:
                raise _at_deployments(exc, [d["path"] for d in values["deployments"]]) from exc
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
        before_fallbacks = list(current[name].fallbacks or []) if name in current else None
        if values["fallbacks"]:
            with _at(path):
                llm_services.logical_model_update(model=fresh[name], fallbacks=values["fallbacks"])
        if before_fallbacks != values["fallbacks"] and not (before_fallbacks is None and not values["fallbacks"]):
            items[name].changes["fallbacks"] = [before_fallbacks, values["fallbacks"]]
    for item in items.values():
        if item.action == "update" and not item.changes:
            item.action = "unchanged"


def _apply_policies(desired: Desired, plan: Plan) -> None:
    current = {(p.scope, p.subject): p for p in RateLimitPolicy.objects.all()}
    for (scope, subject), (path, values) in desired.rate_limits.items():
        existing = current.get((scope, subject))
        with _at(path):
            if existing is None:
                llm_services.rate_limit_policy_create(scope=scope, subject=subject, **values)
                plan.add(
                    PlanItem(
                        "rate_limit",
                        policy_id(scope, subject),
                        path,
                        "create",
                        {k: [None, v] for k, v in {"scope": scope, "subject": subject, **values}.items()},
                    )
                )
                continue
            changes = _diff(existing, values)
            if changes:
                llm_services.rate_limit_policy_update(policy=existing, **{k: values[k] for k in changes})
            plan.add(PlanItem("rate_limit", policy_id(scope, subject), path, "update" if changes else "unchanged", changes))


def _secret_changes(
    stored: dict[str, str], secrets: dict[str, Secret] | None, path: str, opts: dict[str, Any], key: str = "secrets"
) -> dict[str, str]:
    """The named secrets whose value must be written (unchanged and kept ones left out)."""
    writes: dict[str, str] = {}
    for name, secret in (secrets or {}).items():
        value = _secret_value(secret, f"{path}.{key}.{name}", stored=name in stored, **opts)
        if value is not None and stored.get(name) != value:
            writes[name] = value
    return writes


def _apply_headed(
    type_: str,
    entries: dict[str, tuple[str, dict[str, Any], dict[str, Secret] | None]],
    current: dict[str, Any],
    plan: Plan,
    opts: dict[str, Any],
    *,
    key: str,
    aliases: dict[str, str],
    create: Callable[..., Any],
    update: Callable[..., Any],
) -> None:
    """Tools and MCP servers alike: objects with fields and secret headers (stored as one
    encrypted JSON map), written through their create/update services."""
    for name, (path, values, secrets) in entries.items():
        existing = current.get(name)
        stored = json.loads(existing.secret_headers) if existing is not None and existing.secret_headers else {}
        writes = _secret_changes(stored, secrets, path, opts, key=key)
        with _at(path, aliases=aliases):
            if existing is None:
                create(name, secret_headers=writes or None, **values)
                changes = {k: [None, v] for k, v in values.items()}
                changes.update({f"{key}.{n}": [None, SECRET_MARK] for n in writes})
                plan.add(PlanItem(type_, name, path, "create", changes))
                continue
            changes = _diff(existing, values)
            changes.update({f"{key}.{n}": [SECRET_MARK if n in stored else None, SECRET_MARK] for n in writes})
            if changes:
                update(existing, secret_headers=writes or None, **{k: values[k] for k in changes if k in values})
            plan.add(PlanItem(type_, name, path, "update" if changes else "unchanged", changes))


def _apply_tools(desired: Desired, plan: Plan, opts: dict[str, Any]) -> None:
    _apply_headed(
        "tool",
        desired.tools,
        {t.tool_id: t for t in Tool.objects.all()},
        plan,
        opts,
        key="secrets",
        aliases={"tool_id": "id"},
        create=lambda key, /, **kw: tool_services.tool_create(tool_id=key, **kw),
        update=lambda row, /, **kw: tool_services.tool_update(tool=row, **kw),
    )


def _apply_mcp_servers(desired: Desired, plan: Plan, opts: dict[str, Any]) -> None:
    _apply_headed(
        "mcp_server",
        desired.mcp_servers,
        {m.name: m for m in McpServer.objects.all()},
        plan,
        opts,
        key="headers",
        aliases={"secret_headers": "headers"},
        create=lambda key, /, **kw: tool_services.mcp_server_create(name=key, **kw),
        update=lambda row, /, **kw: tool_services.mcp_server_update(server=row, **kw),
    )


def _apply_agents(desired: Desired, plan: Plan, opts: dict[str, Any]) -> None:
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


def _prune(desired: Desired, plan: Plan) -> None:
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
                gone = policy_id(policy.scope, policy.subject)
                with _at(f"rate_limits.{gone}"):
                    llm_services.rate_limit_policy_delete(policy=policy)
                plan.add(PlanItem("rate_limit", gone, f"rate_limits.{gone}", "delete"))
    if "agents" in desired.sections:
        narrowed: dict[str, PlanItem] = {}
        for agent in Agent.objects.exclude(id__in=list(desired.agents)):
            agent_id = agent.id  # a deleted row's pk becomes None
            # Deleting an agent takes it out of every tool's list; a tool of this document
            # that still names it would then not be what the document says.
            for path, values, _secrets in desired.tools.values():
                expect(
                    agent_id not in (values["allowed_agents"] or []),
                    f"{path}.allowed_agents",
                    f"agent {agent_id!r} is deleted by this document (it is not under agents:); "
                    "take it out of this list or keep the agent",
                )
            # Likewise its policies go with it: a policy of this document for it cannot stay.
            policy_path = desired.rate_limits.get((RateLimitScope.AGENT.value, agent_id), (None,))[0]
            expect(
                policy_path is None,
                f"{policy_path}.subject",
                f"agent {agent_id!r} is deleted by this document (it is not under agents:); "
                "take this policy out or keep the agent",
            )
            policies = [
                policy_id(p.scope, p.subject)
                for p in RateLimitPolicy.objects.filter(scope=RateLimitScope.AGENT, subject=agent_id)
            ]
            with _at(f"agents.{agent_id}"):
                forgotten = agent_services.agent_delete(agent=agent)
            plan.add(PlanItem("agent", agent_id, f"agents.{agent_id}", "delete"))
            # Its agent policies are deleted with it (left alone by the rate_limits section,
            # or the section is not in the document): one plan item each.
            for gone in policies:
                plan.add(PlanItem("rate_limit", gone, f"rate_limits.{gone}", "delete"))
            # Tools the document leaves alone lose the agent too: one plan item per tool.
            for tool in Tool.objects.filter(tool_id__in=forgotten).order_by("tool_id"):
                item = narrowed.get(tool.tool_id)
                if item is None:
                    before = sorted([*(tool.allowed_agents or []), agent_id])
                    item = narrowed[tool.tool_id] = plan.add(
                        PlanItem("tool", tool.tool_id, f"tools.{tool.tool_id}", "update", {"allowed_agents": [before, None]})
                    )
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
