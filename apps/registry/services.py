"""Writes that span several rows of one registry object, composed only of the owning apps'
services (so their rules, version bumps and change-log records all hold): a logical model's
deployments, an agent's secrets."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.agents.models import Agent
from apps.agents.services import agent_secret_delete, agent_secret_set
from apps.llm.models import LogicalModel, Provider
from apps.llm.services import deployment_create, deployment_delete, deployment_update
from daarion.infra.errors import ValidationFailed

DEPLOYMENT_FIELDS = ("weight", "rpm_limit", "tpm_limit", "enabled")


def _fail(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


@transaction.atomic
def model_deployments_sync(*, model: LogicalModel, deployments: list[dict[str, Any]], path: str = "deployments") -> bool:
    """Makes the model's deployments exactly `deployments` (matched on provider + upstream
    model: changed ones updated, new ones created, missing ones deleted). Returns whether
    anything changed."""
    providers = {p.name: p for p in Provider.objects.filter(name__in=[d.get("provider") for d in deployments])}
    current = {(d.provider.name, d.upstream_model): d for d in model.deployments.select_related("provider")}
    seen: set[tuple[str, str]] = set()
    changed = False
    for index, spec in enumerate(deployments):
        where = f"{path}[{index}]"
        # A PATCH validates its nested deployments partially (DRF), so a field may be missing.
        for field in ("provider", "upstream_model"):
            if not spec.get(field):
                raise _fail(f"{where}.{field}", "this field is required")
        provider: Provider | None = providers.get(spec["provider"])
        if provider is None:
            raise _fail(f"{where}.provider", f"unknown provider {spec['provider']!r}")
        key = (provider.name, spec["upstream_model"])
        if key in seen:
            raise _fail(where, f"deployment {key[0]}/{key[1]} is listed twice")
        seen.add(key)
        values = {name: spec[name] for name in DEPLOYMENT_FIELDS if name in spec}
        try:
            existing = current.get(key)
            if existing is None:
                deployment_create(logical_model=model, provider=provider, upstream_model=key[1], **values)
                changed = True
            elif any(getattr(existing, name) != value for name, value in values.items()):
                deployment_update(deployment=existing, **values)
                changed = True
        except ValidationFailed as exc:
            raise exc.within(where) from exc
    for key, deployment in current.items():
        if key not in seen:
            deployment_delete(deployment=deployment)
            changed = True
    return changed


@transaction.atomic
def agent_secrets_apply(*, agent: Agent, secrets: dict[str, str | None]) -> bool:
    """Sets each named secret (`None` deletes it); secrets not named are kept."""
    changed = False
    for name, value in secrets.items():
        if value is None:
            changed = agent_secret_delete(agent=agent, name=name) or changed
        else:
            agent_secret_set(agent=agent, name=name, value=value)
            changed = True
    return changed
