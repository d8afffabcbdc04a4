"""HTTP metrics (and the server span, when tracing is on) as ASGI wrappers around the whole
application, so every door is counted and traced the same way: the fast lane, the hot path,
the service APIs, the admin, /mcp and static files. The span is OpenTelemetry's own ASGI
middleware, named and labelled by route template here.

Requests are labelled by route *template* (`/internal/memory/entries/<entry_id>`), never by
raw path, so ids do not make a new series each. The template of a path is resolved once and
remembered (a bounded cache); the fast lane's routes are their own templates.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.urls import Resolver404, get_resolver

from daarion.observability import metrics, tracing

ASGIApp = Any


@lru_cache(maxsize=4096)
def route_of(path: str) -> str:
    """The URL pattern `path` matches, as a template; `unmatched` when none does."""
    if path == "/mcp":
        return path
    static = "/" + settings.STATIC_URL.lstrip("/")
    if path.startswith(static):
        return static + "*"
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return "unmatched"
    return "/" + match.route if match.route else path


def instrument(app: ASGIApp) -> ASGIApp:
    """`app` with HTTP metrics (when METRICS_ENABLED) and a server span (when tracing is on)."""
    if settings.METRICS_ENABLED:
        app = _counted(app)
    if tracing.enabled():
        app = _traced(app)
    return app


def _counted(app: ASGIApp) -> ASGIApp:
    async def counted(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            metrics.observe_http(route_of(scope["path"]), scope["method"], status, time.perf_counter() - started)

    return counted


def _span_details(scope: dict) -> tuple[str, dict[str, str]]:
    route = route_of(scope.get("path", ""))
    return f"{scope.get('method', '')} {route}", {"http.route": route}


def _traced(app: ASGIApp) -> ASGIApp:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        default_span_details=_span_details,
        # A span per body chunk would bury a stream's request span under hundreds of children.
        exclude_spans=["receive", "send"],
        http_capture_headers_server_response=["x-request-id"],
        tracer_provider=tracing.provider(),
    )
