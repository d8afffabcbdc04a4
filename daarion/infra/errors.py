"""The one error hierarchy of the project and the envelope every API renders it in.

`{"error": {"type": ..., "message": ..., "details": ...}}` with the HTTP status of the error.
Services raise these; the API edges (Ninja, DRF, middleware) only render them.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class DaarionError(Exception):
    """Base of every error that reaches a caller. Subclasses fix `status` and `type`."""

    status: int = 500
    type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        type: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if type is not None:
            self.type = type
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def to_envelope(self) -> dict[str, Any]:
        return envelope(self.type, self.message, self.details)


class BadRequest(DaarionError):
    status, type = 400, "bad_request"


class Unauthorized(DaarionError):
    status, type = 401, "unauthorized"


class Forbidden(DaarionError):
    status, type = 403, "forbidden"


class NotFound(DaarionError):
    status, type = 404, "not_found"


class MethodNotAllowed(DaarionError):
    status, type = 405, "method_not_allowed"


class Conflict(DaarionError):
    status, type = 409, "conflict"


class PreconditionFailed(DaarionError):
    status, type = 412, "precondition_failed"


class PayloadTooLarge(DaarionError):
    status, type = 413, "payload_too_large"


class ValidationFailed(DaarionError):
    """Input that parsed but broke a rule; `details` lists `{"path", "message"}` items."""

    status, type = 422, "validation_error"


class RateLimited(DaarionError):
    status, type = 429, "rate_limited"


class UpstreamError(DaarionError):
    status, type = 502, "upstream_error"


class ServiceUnavailable(DaarionError):
    status, type = 503, "service_unavailable"


class GatewayTimeout(DaarionError):
    status, type = 504, "upstream_timeout"


def envelope(type: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"type": type, "message": message, "details": details}}


def error_response(
    status: int,
    type: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse(envelope(type, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def render_error(exc: DaarionError) -> JsonResponse:
    return error_response(exc.status, exc.type, exc.message, exc.details, exc.headers)


# Default `type` for a status when an error was not raised as a DaarionError (Django's own
# 404/405/500 pages, for instance).
STATUS_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}
