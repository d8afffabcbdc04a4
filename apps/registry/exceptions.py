"""The DRF exception handler: every error of the management API in the project's envelope.

Shape and rule errors are 422 with one `{"path", "message"}` per problem (as Ninja's body
errors are); unparsable bodies are 400; the rest keep their status with its envelope type.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from daarion.infra.errors import STATUS_TYPES, DaarionError, envelope
from daarion.infra.outages import outage_error


def _flatten(detail: Any, path: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for name, value in detail.items():
            name = "" if name == "non_field_errors" else str(name)
            out += _flatten(value, f"{path}.{name}" if path and name else (name or path))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [{"path": path, "message": str(item)} for item in detail]
        out = []
        for index, value in enumerate(detail):
            if value:  # DRF reports list items without errors as {}
                out += _flatten(value, f"{path}[{index}]")
        return out
    return [{"path": path, "message": str(detail)}]


def _response(status: int, type_: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> Response:
    return Response(envelope(type_, message, details), status=status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DaarionError):
        headers = dict(exc.headers)
        if exc.status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="registry"')
        return _response(exc.status, exc.type, exc.message, exc.details, headers)
    if isinstance(exc, drf.ValidationError):
        details = _flatten(exc.detail)
        message = "; ".join(f"{d['path']}: {d['message']}" if d["path"] else d["message"] for d in details)
        return _response(422, "validation_error", message or "invalid input", details)
    if isinstance(exc, drf.ParseError):
        return _response(400, "bad_request", f"the body could not be parsed: {exc.detail}")
    if isinstance(exc, RecursionError):
        # The JSON and YAML parsers recurse per nesting level and catch only their own errors.
        return _response(400, "bad_request", "the body could not be parsed: it is nested too deeply")
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return _response(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <service token>' (scope registry or registry:read) or log in as staff",
            headers={"WWW-Authenticate": 'Bearer realm="registry"'},
        )
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return _response(403, "forbidden", str(getattr(exc, "detail", "")) or "forbidden")
    if isinstance(exc, (Http404, drf.NotFound)):
        return _response(404, "not_found", "no such object")
    if isinstance(exc, RequestDataTooBig):
        return _response(413, "payload_too_large", "request body too large")
    if isinstance(exc, (IntegrityError, ProtectedError)):
        return _response(409, "conflict", f"conflicts with stored data: {exc}")
    if isinstance(exc, drf.APIException):
        status = exc.status_code
        headers = {}
        if isinstance(exc, drf.Throttled) and exc.wait is not None:  # type: ignore[attr-defined]  # set in __init__, not in the stubs
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        if isinstance(exc, drf.MethodNotAllowed):
            view = context.get("view")
            allowed = view.allowed_methods if view else []
            headers["Allow"] = ", ".join(allowed)
        return _response(status, STATUS_TYPES.get(status, "error"), str(exc.detail), headers=headers)
    outage = outage_error(exc)
    if outage is not None:  # Postgres or Redis down: a named 503 with Retry-After
        return _response(outage.status, outage.type, outage.message, headers=outage.headers)
    return None  # a crash: Django's 500, re-shaped by ApiErrorShapeMiddleware
