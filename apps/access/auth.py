"""Service-token authentication for the Ninja APIs, and the "may this token act for X" check.

Tokens are looked up in a process-local snapshot (see live_config), so authenticating costs
a hash and a dict lookup; `last_used_at` is written at most once a minute per token, in a
background thread.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, overload

from django.http import HttpRequest
from django.utils import timezone
from ninja.security.base import AuthBase

from daarion.infra.errors import Forbidden, Unauthorized, ValidationFailed
from daarion.infra.live_config import LiveSnapshot
from apps.access.models import ServiceToken
from apps.access.services import TOKEN_CONFIG, hash_token, service_token_touch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a service token with its scopes and agent binding."""

    token_id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    # None: may act for any agent; empty: for none (every agent it named has been deleted;
    # agent_delete narrows the list and bumps the snapshot, so the id stops working at once).
    agents: frozenset[str] | None
    enabled: bool
    expires_at: datetime | None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_act_for(self, agent_id: str) -> bool:
        return self.agents is None or agent_id in self.agents

    def ensure_can_act_for(self, agent_id: str) -> None:
        """Raises 403 when this token is bound to agents and `agent_id` is not one of them."""
        if not self.may_act_for(agent_id):
            raise Forbidden(
                f"token {self.name!r} may not act for agent {agent_id!r}",
                type="agent_not_allowed",
                details={"agent_id": agent_id, "allowed_agents": sorted(self.agents or [])},
            )

    @overload
    def acting_agent(self, named: str | None, *, source: str, required: Literal[True]) -> str: ...

    @overload
    def acting_agent(self, named: str | None, *, source: str, required: bool) -> str | None: ...

    def acting_agent(self, named: str | None, *, source: str, required: bool) -> str | None:
        """The agent a call acts for, the same answer on every door (docs/ARCHITECTURE.md,
        *Service tokens*): the agent the request names, if the token may act for it (else 403
        `agent_not_allowed`); else the token's only agent; else, for a token bound to several
        agents, or an unbound one on a door that needs an agent (`required`), 422
        `agent_required` naming `source`, where the request names its agent. A token bound to
        no agent (all of them deleted) acts for none: 403 `agent_not_allowed`. None: an
        unbound token acting for no agent in particular, where the door allows it."""
        if named:
            self.ensure_can_act_for(named)
            return named
        if self.agents is not None and len(self.agents) == 1:
            return next(iter(self.agents))
        if self.agents is not None and not self.agents:
            raise Forbidden(f"token {self.name!r} may act for no agent", type="agent_not_allowed", details={"allowed_agents": []})
        if self.agents is None and not required:
            return None
        why = "this token acts for several agents" if self.agents is not None else "this token is not bound to one agent"
        raise ValidationFailed(
            f"{why}: say which agent the call acts for ({source})",
            type="agent_required",
            details=[{"path": source, "message": "required: the agent this call acts for", "type": "missing"}],
        )


def _load_tokens() -> dict[str, Principal]:
    return {
        row.secret_hash: Principal(
            token_id=row.pk,
            name=row.name,
            prefix=row.prefix,
            scopes=frozenset(row.scopes or []),
            agents=None if row.agents is None else frozenset(row.agents),
            enabled=row.enabled,
            expires_at=row.expires_at,
        )
        for row in ServiceToken.objects.all()
    }


_tokens = LiveSnapshot(TOKEN_CONFIG, _load_tokens, max_age=30.0)
# The id of the token the current request authenticated with: usage records carry it (spend
# and calls per token) without every service passing it down. Each request is a task of its
# own, so the value never outlives its request.
token_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("token_id", default=None)
_last_touch: dict[int, float] = {}
_TOUCH_EVERY = 60.0


def _touch_later(principal: Principal) -> None:
    now = time.monotonic()
    if now - _last_touch.get(principal.token_id, -_TOUCH_EVERY) < _TOUCH_EVERY:
        return
    _last_touch[principal.token_id] = now
    when = timezone.now()

    def _write() -> None:
        try:
            service_token_touch(token_id=principal.token_id, when=when)
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a request
            logger.warning("could not record token use", exc_info=True)
        finally:
            from django.db import connection

            connection.close()

    threading.Thread(target=_write, daemon=True, name="token-touch").start()


def _bearer(request: HttpRequest) -> str:
    # META, not request.headers: the headers view is built from all of META on first use, a
    # visible cost per call on the proxy's hot path for the one header read here.
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if not header:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <service token>'")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer <service token>'")
    return value.strip()


def ensure_scope(principal: Principal, scope: str) -> None:
    """Raises 403 unless the token has `scope`."""
    if not principal.has_scope(scope):
        raise Forbidden(
            f"token {principal.name!r} lacks the {scope!r} scope",
            type="scope_not_allowed",
            details={"required_scope": scope, "token_scopes": sorted(principal.scopes)},
        )


def _check(principal: Principal | None, scope: str | None) -> Principal:
    if principal is None:
        raise Unauthorized("unknown service token")
    if not principal.enabled:
        raise Unauthorized("service token is disabled", type="token_disabled")
    if principal.expires_at is not None and principal.expires_at <= timezone.now():
        raise Unauthorized("service token has expired", type="token_expired")
    if scope is not None:
        ensure_scope(principal, scope)
    _touch_later(principal)
    token_id_var.set(principal.token_id)
    return principal


def authenticate_request(request: HttpRequest, scope: str | None) -> Principal:
    """Sync authentication, for code outside Ninja (DRF, plain views)."""
    digest = hash_token(_bearer(request))
    principal = _tokens.get().get(digest) or _tokens.get(recheck=True).get(digest)
    return _check(principal, scope)


class ServiceTokenAuth(AuthBase):
    """Ninja auth callable: `auth=ServiceTokenAuth("llm")`. Raises 401/403 envelopes.

    An async callable, so async endpoints authenticate without a thread hop.
    """

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self, scope: str | None) -> None:
        super().__init__()
        self.scope = scope
        self.is_async = True

    async def __call__(self, request: HttpRequest) -> Principal:
        digest = hash_token(_bearer(request))
        # A miss re-checks the version at once: a token created a moment ago works at once.
        principal = (await _tokens.aget()).get(digest) or (await _tokens.aget(recheck=True)).get(digest)
        principal = _check(principal, self.scope)
        request.principal = principal  # type: ignore[attr-defined]
        return principal


def principal_of(request: HttpRequest) -> Principal:
    """The principal that ServiceTokenAuth attached to the request."""
    return request.auth  # type: ignore[attr-defined, return-value]


async def authenticate_authorization(authorization: str, scope: str | None) -> Principal:
    """Async authentication from a raw Authorization header, for doors outside Django (the MCP
    gateway is plain ASGI); the same checks and errors as ServiceTokenAuth."""
    scheme, _, value = authorization.partition(" ")
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <service token>'")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer <service token>'")
    digest = hash_token(value.strip())
    principal = (await _tokens.aget()).get(digest) or (await _tokens.aget(recheck=True)).get(digest)
    return _check(principal, scope)
