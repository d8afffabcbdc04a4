"""The one error hierarchy of the project and the envelope every API renders it in.

`{"error": {"type": ..., "message": ..., "details": ...}}` with the HTTP status of the error.
Services raise these; the API edges (Ninja, DRF, middleware) only render them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse

if TYPE_CHECKING:
    from django.db.models import Model


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
    """Input that parsed but broke a rule; `details` lists `{"path", "message"}` items.

    Services raise it for every rule they enforce, keyed by the field (or document path) each
    problem is about; the edges only re-path it (`within`) or spread it over a form (admin).
    """

    status, type = 422, "validation_error"

    @classmethod
    def of(cls, details: list[dict[str, Any]], **kwargs: Any) -> ValidationFailed:
        """A refusal whose message lists its problems ("path: message; ...")."""
        return cls(_listing(details), details=details, **kwargs)

    @classmethod
    def on_fields(cls, errors: Mapping[str, str | Iterable[str]], *, prefix: str = "") -> ValidationFailed:
        """From `{field: message or messages}`; the field `__all__` (or "") is the object itself."""
        details = []
        for name, messages in errors.items():
            path = _join(prefix, "" if name == "__all__" else name)
            for message in [messages] if isinstance(messages, str) else messages:
                details.append({"path": path, "message": str(message)})
        return cls.of(details)

    @classmethod
    def from_django(cls, exc: DjangoValidationError, *, prefix: str = "") -> ValidationFailed:
        """Django's refusal (a model's `full_clean()`) in our words, with the same paths."""
        if hasattr(exc, "error_dict"):
            return cls.on_fields(exc.message_dict, prefix=prefix)
        return cls.on_fields({"": exc.messages}, prefix=prefix)

    @property
    def messages(self) -> list[str]:
        """The message of each problem, without its path."""
        if isinstance(self.details, list) and self.details:
            return [str(d.get("message", "")) for d in self.details]
        return [self.message]

    def by_path(self) -> dict[str, list[str]]:
        """`{path: [message, ...]}`, in the order the problems were found ("" = the object)."""
        out: dict[str, list[str]] = {}
        for detail in self.details if isinstance(self.details, list) else [{"path": "", "message": self.message}]:
            out.setdefault(str(detail.get("path", "")), []).append(str(detail.get("message", "")))
        return out

    def within(self, prefix: str = "", aliases: Mapping[str, str] | None = None) -> ValidationFailed:
        """This refusal as the enclosing document or API names things: each path renamed by
        `aliases` (a model's `tool_id` is the API's `id`) and put under `prefix`.

        A message that only lists the problems is listed again with the new paths; any other
        keeps its words with the prefix in front.
        """
        aliases = aliases or {}
        details = self.details if isinstance(self.details, list) else []
        moved = [
            {"path": _join(prefix, aliases.get(str(d.get("path", "")), str(d.get("path", "")))), "message": d.get("message", "")}
            for d in details
        ]
        if not prefix and all(m["path"] == d.get("path") for m, d in zip(moved, details)):
            return self
        if details and self.message == _listing(details):
            message = _listing(moved)
        else:
            message = f"{prefix}: {self.message}" if prefix else self.message
        return ValidationFailed(
            message,
            details=moved or [{"path": prefix, "message": self.message}],
            type=self.type,
            status=self.status,
            headers=self.headers,
        )


def validate_model(instance: Model, *, prefix: str = "", **full_clean: Any) -> None:
    """`instance.full_clean(**full_clean)`, refusing with a ValidationFailed: the one place a
    Django ValidationError becomes ours, so no edge has to translate one."""
    try:
        instance.full_clean(**full_clean)
    except DjangoValidationError as exc:
        raise ValidationFailed.from_django(exc, prefix=prefix) from exc


def _join(prefix: str, path: str) -> str:
    return ".".join(part for part in (prefix, path) if part)


def _listing(details: list[dict[str, Any]]) -> str:
    text = "; ".join(f"{d['path']}: {d['message']}" if d.get("path") else str(d.get("message", "")) for d in details)
    return text or "invalid input"


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
