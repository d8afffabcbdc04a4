"""Who may do what: `registry:read` tokens read, `registry` tokens read and write, staff
sessions do both; everybody else gets 401 (no credentials) or 403 (wrong ones, or a token
bound to agents)."""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apps.access.auth import Principal
from apps.access.choices import Scope
from daarion.infra.errors import Forbidden


def is_read(request: Request, view) -> bool:  # noqa: ANN001 - any DRF view
    reads = getattr(view, "is_read_request", None)
    return request.method in SAFE_METHODS or bool(reads and reads(request))


class RegistryAccess(BasePermission):
    def has_permission(self, request: Request, view) -> bool:  # noqa: ANN001
        principal = request.auth
        if isinstance(principal, Principal):
            if principal.agents is not None:
                # The registry is configuration shared by every agent (other agents' prompts,
                # providers, tools): a token bound to agents would act for all of them here.
                raise Forbidden(
                    f"token {principal.name!r} is bound to agents; the registry API takes only tokens not bound to agents",
                    type="agent_bound_token",
                    details={"allowed_agents": sorted(principal.agents)},
                )
            if is_read(request, view):
                if not (principal.has_scope(Scope.REGISTRY) or principal.has_scope(Scope.REGISTRY_READ)):
                    raise Forbidden(
                        f"token {principal.name!r} lacks the 'registry' or 'registry:read' scope",
                        type="scope_not_allowed",
                        details={
                            "required_scope": [Scope.REGISTRY, Scope.REGISTRY_READ],
                            "token_scopes": sorted(principal.scopes),
                        },
                    )
                return True
            if not principal.has_scope(Scope.REGISTRY):
                raise Forbidden(
                    f"token {principal.name!r} may not change the registry; it needs the 'registry' scope",
                    type="scope_not_allowed",
                    details={"required_scope": Scope.REGISTRY, "token_scopes": sorted(principal.scopes)},
                )
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            raise NotAuthenticated()
        if not (user.is_active and user.is_staff):
            raise Forbidden("the registry API is for staff users and service tokens", type="staff_only")
        return True
