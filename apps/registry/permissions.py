"""Who may do what: `registry:read` tokens read, `registry` tokens read and write, staff
sessions do both; everybody else gets 401 (no credentials) or 403 (wrong ones)."""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from daarion.auth import Principal
from daarion.choices import Scope
from daarion.errors import Forbidden


def is_read(request: Request, view) -> bool:  # noqa: ANN001 - any DRF view
    reads = getattr(view, "is_read_request", None)
    return request.method in SAFE_METHODS or bool(reads and reads(request))


class RegistryAccess(BasePermission):
    def has_permission(self, request: Request, view) -> bool:  # noqa: ANN001
        principal = request.auth
        if isinstance(principal, Principal):
            if is_read(request, view):
                if not (principal.has_scope(Scope.REGISTRY) or principal.has_scope(Scope.REGISTRY_READ)):
                    raise Forbidden(
                        f"token {principal.name!r} lacks the 'registry' or 'registry:read' scope",
                        type="scope_not_allowed",
                        details={"required_scope": [Scope.REGISTRY, Scope.REGISTRY_READ], "token_scopes": sorted(principal.scopes)},
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
