"""Who is calling the management API: a service token (scopes `registry` / `registry:read`)
or a staff user's session (the browsable API). One principal type per door, one actor name."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.access.auth import Principal, authenticate_request


@dataclass(frozen=True)
class TokenUser:
    """`request.user` of a token call: authenticated, never staff (a token is not a person)."""

    principal: Principal
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False
    is_active: bool = True

    def get_username(self) -> str:
        return f"token:{self.principal.name}"

    def __str__(self) -> str:
        return self.get_username()


class ServiceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`; scopes are checked by the permission, per method."""

    def authenticate(self, request: Request) -> tuple[TokenUser, Principal] | None:
        django_request = request._request
        if "Authorization" not in django_request.headers:
            return None  # leave it to the session
        # Raises daarion Unauthorized (401 envelope) for unknown, disabled, expired tokens.
        principal = authenticate_request(django_request, scope=None)
        django_request.principal = principal  # the access log names the token
        return TokenUser(principal), principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="registry"'


def actor_of(request: Request) -> str:
    """The change-log actor of a write: `token:<name>` or `user:<username>`."""
    if isinstance(request.auth, Principal):
        return f"token:{request.auth.name}"
    return f"user:{request.user.get_username()}"
