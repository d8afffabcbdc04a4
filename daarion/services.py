"""Writes of the project wiring: service tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from daarion.choices import Scope
from daarion.live_config import bump_version
from daarion.models import ServiceToken

TOKEN_CONFIG = "service-tokens"
_TOKEN_PREFIX = "dst_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _clean_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValidationError({"scopes": f"unknown scope(s) {unknown}; known: {sorted(Scope.values)}"})
    if not scopes:
        raise ValidationError({"scopes": "a token needs at least one scope"})
    return sorted(set(scopes))


def _clean_agents(agents: list[str] | None) -> list[str] | None:
    if agents is None:
        return None
    cleaned = sorted({a.strip() for a in agents if a and a.strip()})
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
        agents=_clean_agents(agents),
        expires_at=expires_at,
        enabled=enabled,
    )
    token.full_clean()
    token.save()
    bump_version(TOKEN_CONFIG)
    return IssuedToken(token=token, raw=raw)


@transaction.atomic
def service_token_update(
    *,
    token: ServiceToken,
    scopes: list[str] | None = None,
    agents: list[str] | None | object = ...,
    enabled: bool | None = None,
    expires_at: datetime | None | object = ...,
) -> ServiceToken:
    if scopes is not None:
        token.scopes = _clean_scopes(scopes)
    if agents is not ...:
        token.agents = _clean_agents(agents)  # type: ignore[arg-type]
    if enabled is not None:
        token.enabled = enabled
    if expires_at is not ...:
        token.expires_at = expires_at  # type: ignore[assignment]
    token.full_clean()
    token.save()
    bump_version(TOKEN_CONFIG)
    return token


@transaction.atomic
def service_token_delete(*, token: ServiceToken) -> None:
    token.delete()
    bump_version(TOKEN_CONFIG)


def service_token_touch(*, token_id: int, when: datetime) -> None:
    """Records use; called at most once a minute per token, off the request path."""
    ServiceToken.objects.filter(pk=token_id).update(last_used_at=when)
