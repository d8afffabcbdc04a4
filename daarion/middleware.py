"""Request-level middleware: request ids, body size limits, and the error envelope for APIs.

All three are async-capable so the ASGI server never hops to a thread just to run them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from apps.access.audit import acting_as
from daarion.infra.errors import STATUS_TYPES, error_response
from daarion.log import request_id_var

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("daarion.access")

# Caller-supplied ids are echoed back, so keep them short and boring.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def is_api_path(path: str) -> bool:
    return path.startswith(settings.API_PATH_PREFIXES)


class _HybridMiddleware:
    """Runs `process` on the sync or async path, whichever the handler chain uses."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        early = self.before(request)
        if early is not None:
            return early
        return self.after(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        early = self.before(request)
        if early is not None:
            return early
        return self.after(request, await self.get_response(request))

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class RequestIdMiddleware(_HybridMiddleware):
    """Takes `x-request-id` from the caller (or makes one), logs with it, and echoes it back.

    Also writes the access log: one structured line per API request.
    """

    def before(self, request: HttpRequest) -> None:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")  # not request.headers: see apps.access.auth._bearer
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else f"req-{uuid.uuid4().hex}"
        request.request_id = request_id  # type: ignore[attr-defined]
        request._request_id_token = request_id_var.set(request_id)  # type: ignore[attr-defined]
        request._started_at = time.perf_counter()  # type: ignore[attr-defined]
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response["x-request-id"] = request.request_id  # type: ignore[attr-defined]
        if is_api_path(request.path):
            principal = getattr(request, "principal", None)
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - request._started_at) * 1000, 2),  # type: ignore[attr-defined]
                    "token": getattr(principal, "name", None),
                    "streaming": getattr(response, "streaming", False),
                },
            )
        token = getattr(request, "_request_id_token", None)
        if token is not None and not getattr(response, "streaming", False):
            # A streaming body is produced after this returns and still logs with the id.
            try:
                request_id_var.reset(token)
            except ValueError:  # reset from another context (sync/async hop): harmless
                pass
        return response


class BodySizeLimitMiddleware(_HybridMiddleware):
    """Refuses API requests no view can take: bodies over MAX_BODY_BYTES (413), and URLs
    carrying a NUL byte (400).

    Under ASGI the BodyLimit guard in front of the application (daarion/body_limit.py) has
    already refused any body over the limit before it was read, announced or chunked; this
    check keeps the rule for the WSGI entry point and the test client. A NUL (`%00`) is never part of
    an id, and PostgreSQL refuses it in text, so a path or query parameter holding one would
    otherwise reach a query and fail there as a 500.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        if not is_api_path(request.path):
            return None
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return error_response(400, "bad_request", "the URL contains a NUL character (%00)")
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return error_response(400, "bad_request", "Content-Length is not a number")
        if size > settings.MAX_BODY_BYTES:
            return error_response(
                413,
                "payload_too_large",
                f"request body is {size} bytes; the limit is {settings.MAX_BODY_BYTES}",
                {"limit_bytes": settings.MAX_BODY_BYTES, "size_bytes": size},
            )
        return None


class ApiErrorShapeMiddleware(_HybridMiddleware):
    """Re-renders any non-JSON error on an API path (Django's 404/405/500 pages) as the envelope.

    Endpoints already answer in the envelope; this catches what happens before or around
    them: unknown routes, wrong methods, crashes in other middleware. On /v1 the envelope is
    then re-rendered in the shape that door's clients read (OpenAI's, Anthropic's).
    """

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code < 400 or not is_api_path(request.path):
            return response
        if request.path.startswith("/v1/"):
            from apps.llm.errors import reshape  # the door's own shapes live with the door

            return reshape(request.path, self._enveloped(request, response))
        return self._enveloped(request, response)

    def _enveloped(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        if status == 404:
            message = f"no API route {request.method} {request.path}"
        elif status == 405:
            allowed = response.get("Allow", "")
            message = f"method {request.method} is not allowed on {request.path}"
            if allowed:
                message += f"; allowed: {allowed}"
        else:
            message = _short_text(response) or f"request failed with status {status}"
            if status >= 500:
                message = "internal error; the request id in x-request-id finds it in the logs"
        shaped = error_response(status, STATUS_TYPES.get(status, "error"), message)
        if "Allow" in response:
            shaped["Allow"] = response["Allow"]
        return shaped


def _short_text(response: HttpResponseBase) -> str:
    if getattr(response, "streaming", False):
        return ""
    body = getattr(response, "content", b"")[:300]
    try:
        text = body.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a message is a nicety, never a reason to fail
        return ""
    if text.lstrip().startswith("<"):
        return ""
    try:
        return str(json.loads(text))
    except ValueError:
        return text.strip()


class AdminActorMiddleware(_HybridMiddleware):
    """Names the staff user as the actor of registry changes made through the admin."""

    def __call__(self, request: HttpRequest):  # type: ignore[override]
        if not request.path.startswith("/admin/"):
            return self.get_response(request)
        if self.is_async:
            return self._admin_acall(request)
        user = request.user  # type: ignore[attr-defined]
        if not user.is_authenticated:
            return self.get_response(request)
        with acting_as(f"user:{user.get_username()}", "admin"):
            return self.get_response(request)

    async def _admin_acall(self, request: HttpRequest) -> HttpResponseBase:
        user = await request.auser()  # type: ignore[attr-defined]
        if not user.is_authenticated:
            return await self.get_response(request)
        # The context travels into the thread that runs the (sync) admin view.
        with acting_as(f"user:{user.get_username()}", "admin"):
            return await self.get_response(request)
