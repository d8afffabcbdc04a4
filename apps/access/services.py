"""Writes of the project wiring: service tokens and encryption-key rotation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast

from daarion.infra.agent_directory import unknown_agent_ids
from apps.access.choices import Scope
from daarion.infra.crypto import EncryptedTextField, key_id_of, key_ring
from daarion.infra.live_config import bump_version
from daarion.infra.errors import ValidationFailed, validate_model
from daarion.infra.model_update import model_update
from apps.access.models import ServiceToken

TOKEN_CONFIG = "service-tokens"
_TOKEN_PREFIX = "dst_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _clean_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValidationFailed.on_fields({"scopes": f"unknown scope(s) {unknown}; known: {sorted(Scope.values)}"})
    if not scopes:
        raise ValidationFailed.on_fields({"scopes": "a token needs at least one scope"})
    return sorted(set(scopes))


def clean_token_agents(agents: Any) -> list[str] | None:
    """None (any agent) or a sorted list of distinct agent ids, each naming an agent that
    exists ([] = no agent). Raises ValidationFailed on `agents` naming every unknown id.

    Admin, the create_service_token command and the services all come through here: a typo
    would otherwise be a binding to nobody that looks like one to somebody.
    """
    if agents is None:
        return None
    if not isinstance(agents, (list, tuple)) or not all(isinstance(a, str) for a in agents):
        raise ValidationFailed.on_fields({"agents": "must be null (any agent) or a list of agent ids"})
    cleaned = sorted({a.strip() for a in agents if a and a.strip()})
    # Without the agents app no resolver is registered and every id is accepted (agent_directory).
    unknown = unknown_agent_ids(cleaned)
    if unknown:
        raise ValidationFailed.on_fields(
            {"agents": [f"no agent {agent_id!r} in the registry (create the agent first)" for agent_id in unknown]}
        )
    return cleaned


@dataclass(frozen=True)
class IssuedToken:
    token: ServiceToken
    raw: str  # shown once, never stored


@transaction.atomic
def service_token_create(
    *,
    name: str,
    scopes: list[str],
    agents: list[str] | None = None,
    expires_at: datetime | None = None,
    enabled: bool = True,
) -> IssuedToken:
    body = secrets.token_urlsafe(32)
    raw = f"{_TOKEN_PREFIX}{body}"
    token = ServiceToken(
        name=name,
        prefix=raw[: len(_TOKEN_PREFIX) + 8],
        secret_hash=hash_token(raw),
        scopes=_clean_scopes(scopes),
        agents=clean_token_agents(agents),
        expires_at=expires_at,
        enabled=enabled,
    )
    validate_model(token)
    token.save()
    bump_version(TOKEN_CONFIG)
    return IssuedToken(token=token, raw=raw)


@transaction.atomic
def service_token_update(
    *,
    token: ServiceToken,
    name: str | None = None,
    scopes: list[str] | None = None,
    agents: list[str] | None | object = ...,
    enabled: bool | None = None,
    expires_at: datetime | None | object = ...,
) -> ServiceToken:
    data: dict[str, Any] = {}
    if name is not None:
        data["name"] = name
    if scopes is not None:
        data["scopes"] = _clean_scopes(scopes)
    if agents is not ...:
        data["agents"] = clean_token_agents(agents)
    if enabled is not None:
        data["enabled"] = enabled
    if expires_at is not ...:
        data["expires_at"] = expires_at
    if model_update(instance=token, fields=("name", "scopes", "agents", "enabled", "expires_at"), data=data):
        bump_version(TOKEN_CONFIG)
    return token


@transaction.atomic
def service_tokens_forget_agent(*, agent_id: str) -> list[ServiceToken]:
    """Takes `agent_id` out of every token's `agents` (the agent is being deleted); returns
    the tokens it changed. Each is saved like any token edit (change log, snapshot bump), so
    every process stops honouring the id once the transaction commits.

    A list that becomes empty stays [] (acts for no agent), never None (any agent): deleting
    an agent must never widen what a token may do. Only the list narrows, so nothing else
    of the token is checked again here.
    """
    changed = []
    for token in ServiceToken.objects.select_for_update().filter(agents__contains=[agent_id]).order_by("pk"):
        token.agents = [a for a in token.agents or [] if a != agent_id]  # never None here: the filter matched it
        token.save(update_fields=["agents"])
        changed.append(token)
    if changed:
        bump_version(TOKEN_CONFIG)
    return changed


@transaction.atomic
def service_token_delete(*, token: ServiceToken) -> None:
    token.delete()
    bump_version(TOKEN_CONFIG)


def service_token_touch(*, token_id: int, when: datetime) -> None:
    """Records use; called at most once a minute per token, off the request path."""
    ServiceToken.objects.filter(pk=token_id).update(last_used_at=when)


def encrypted_fields(model_list: Iterable[type[models.Model]] | None = None) -> list[tuple[type[models.Model], str]]:
    """Every (model, field name) stored with EncryptedTextField."""
    model_list = apps.get_models() if model_list is None else model_list
    return [(model, fld.name) for model in model_list for fld in model._meta.get_fields() if isinstance(fld, EncryptedTextField)]


def encryption_rotate(*, model_list: Iterable[type[models.Model]] | None = None, dry_run: bool = False) -> dict[str, int]:
    """Re-seals every encrypted value not under the primary key; returns counts per field.

    Put the new key first in DAARION_ENCRYPTION_KEYS, keep the old ones after it, run this,
    then drop the old keys.
    """
    primary = key_ring().primary_kid
    counts: dict[str, int] = {}
    for model, field_name in encrypted_fields(model_list):
        # Cast to a plain text column reads the stored ciphertext without decrypting it.
        raw = model._default_manager.annotate(_raw=Cast(F(field_name), TextField())).exclude(_raw="").exclude(_raw__isnull=True)
        stale = [pk for pk, value in raw.values_list("pk", "_raw") if key_id_of(value) != primary]
        if stale and not dry_run:
            with transaction.atomic():
                for row in model._default_manager.select_for_update().filter(pk__in=stale):
                    # Reading opened it with the old key; the update seals it with the primary.
                    model._default_manager.filter(pk=row.pk).update(**{field_name: getattr(row, field_name)})
        if stale:
            counts[f"{model._meta.label}.{field_name}"] = len(stale)
    return counts
