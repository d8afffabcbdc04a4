"""The /v1 door's errors in the shapes its clients read: OpenAI's everywhere on /v1, Anthropic's
on /v1/messages. Every error is raised and rendered once, in the house envelope
`{"error": {"type", "message", "details"}}`; `reshape` re-renders that envelope for the door at
the last step (ApiErrorShapeMiddleware), so the fast lane, Ninja's handlers and the middleware's
own refusals all come out the same. Only error answers pay for it.

OpenAI: `{"error": {"message", "type", "param", "code"}}`, 400 for every invalid request (the
house's 422 included, `param` naming the field), 401, 403, 404 `model_not_found`, 429
`rate_limit_exceeded` / `insufficient_quota`, 5xx `server_error`. The SDKs pick their exception
class by status and expose `code` and `param`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.http.response import HttpResponseBase

ANTHROPIC_PATHS = ("/v1/messages",)

_UNION_MEMBER = re.compile(r"^(str|int|float|bool|dict|list|none|[a-z-]+\[.*\].*)$")
# Pydantic error types that mean "wrong JSON type" (OpenAI's code `invalid_type`).
_TYPE_ERRORS = ("_type", "_parsing", "model_attributes_type", "dict_type", "list_type")


def _param_of(details: Any) -> str | None:
    """The request field an error is about: a validation error's first path, or `param`."""
    if isinstance(details, dict):
        param = details.get("param")
        return str(param) if param else None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        path = str(details[0].get("path") or "")
        if path.startswith("body."):
            # Pydantic names the union member that failed (`input.list[int]`): not a field.
            parts = [p for p in path[5:].split(".") if p and not _UNION_MEMBER.match(p)]
            return ".".join(parts) or None
        if path.endswith(" header"):
            return path[: -len(" header")]
        return None
    return None


def _validation_code(details: Any) -> str:
    first = details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
    kind = str(first.get("type") or "")
    if kind == "missing":
        return "missing_required_parameter"
    if kind.endswith(_TYPE_ERRORS):
        return "invalid_type"
    return "invalid_value"


def openai_error(status: int, type: str, message: str, details: Any = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of OpenAI's error for a house error."""
    param = _param_of(details)
    code: str | None = type
    kind = "invalid_request_error"
    if status == 422 or type == "validation_error":
        status, code = 400, _validation_code(details)
    elif status == 400 and type == "bad_request":
        code = None  # OpenAI's own answer to an unreadable body has no code either
    elif status == 401:
        code = "invalid_api_key"
    elif status == 404 and type in ("model_not_found", "model_disabled"):
        code, param = "model_not_found", "model"
    elif type in ("not_found", "method_not_allowed"):
        code = None  # an unknown route or method: OpenAI names no code either
    elif status == 429 and type == "budget_exceeded":
        kind = code = "insufficient_quota"
    elif status == 429:
        limit = details.get("limit") if isinstance(details, dict) else None
        kind, code = ("tokens" if limit == "tokens" else "requests"), "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_error(status: int, type: str, message: str, details: Any = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of Anthropic's error for a house error."""
    if status == 422:
        status = 400
        param = _param_of(details)
        if param:
            message = f"{param}: {message}" if not message.startswith("invalid request") else message
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def shape_for(path: str) -> Any:
    return anthropic_error if path.startswith(ANTHROPIC_PATHS) else openai_error


def reshape(path: str, response: HttpResponseBase) -> HttpResponseBase:
    """A house-envelope error answer on /v1, re-rendered in the door's shape in place (its
    headers, Retry-After included, stay). Anything else passes unchanged."""
    if getattr(response, "streaming", False):
        return response
    try:
        error = json.loads(response.content)["error"]  # type: ignore[attr-defined]
        house = (error["type"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        return response
    if "param" in error:  # already in OpenAI's shape
        return response
    status, body = shape_for(path)(response.status_code, *house)
    response.status_code = status
    response.content = json.dumps(body).encode()  # type: ignore[attr-defined]
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))  # type: ignore[attr-defined]
    return response
