"""HTTP metrics (and the server span, when tracing is on) as one ASGI wrapper around the whole
application, so every door is counted the same way: the fast lane, the hot path, the service
APIs, the admin, /mcp and static files.

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
    counting = settings.METRICS_ENABLED
    tracing_on = tracing.enabled()
    if not counting and not tracing_on:
        return app

    async def instrumented(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started = time.perf_counter()
        status = 500
        server = None

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                tracing.note_response(server, message)
            await send(message)

        try:
            if tracing_on:
                with tracing.server_span(scope, route_of(scope["path"])) as server:
                    await app(scope, receive, send_and_note)
            else:
                await app(scope, receive, send_and_note)
        finally:
            if counting:
                metrics.observe_http(route_of(scope["path"]), scope["method"], status, time.perf_counter() - started)

    return instrumented
