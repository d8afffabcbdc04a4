"""ASGI entry point (the production server): `uvicorn daarion.asgi:application`.

Static files (the admin's CSS/JS, the dashboard's chart library) are served by Django's
ASGI static handler unless DAARION_SERVE_STATIC=0 (put a CDN or nginx in front instead);
it answers only under STATIC_URL and passes every other request straight through.

Requests are routed by path (django_router):
- `/mcp` to the MCP SDK's ASGI app behind toolcore's gateway (apps/tools/mcp/), not Django;
- the fast routes (apps register them: `daarion.fastlane.register`) to the fast lane;
- the hot paths — the LLM proxy (`/internal/llm/`, `/v1/`) and toolcore (`/internal/tools/`)
  — to HotPathHandler, the other service APIs (`/internal/`, `/v1/`) to ServiceApiHandler:
  Django's handler without the browser middleware and, on the hot path, without its
  per-request thread work (daarion/fastlane/handlers.py says what each leaves out and why);
- everything else (admin, /api/registry with its session auth, /health) to Django's own
  handler with the full middleware chain.
The trimmed handlers and the lane mirror Django's and Ninja's internals of the releases in
daarion/fastlane/versions.py; on other releases they are left out (every request takes
Django's own way) and `manage.py check` says so. DAARION_FAST_LANE=0 leaves out the lane only.
"""

import asyncio
import gc
import io
import logging
import os
from collections.abc import Awaitable, Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after setup
from django.http import HttpResponse  # noqa: E402
from django.http.response import HttpResponseBase  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from apps.llm.usage import flush_at_exit as flush_usage_at_exit  # noqa: E402
from daarion.observability.http import instrument  # noqa: E402
from apps.tools.mcp.gateway import gateway as mcp_gateway  # noqa: E402
from apps.tools.mcp.gateway import refuse as mcp_refuse  # noqa: E402
from daarion import fastlane  # noqa: E402
from daarion.fastlane.handlers import FastLaneHandler, HotPathHandler, ServiceApiHandler  # noqa: E402
from daarion.body_limit import App, BodyLimit  # noqa: E402
from daarion.infra.errors import PayloadTooLarge, error_response  # noqa: E402
from daarion.middleware import ApiErrorShapeMiddleware, RequestIdMiddleware, is_api_path  # noqa: E402

logger = logging.getLogger(__name__)
MCP_PATH = "/mcp"
SERVICE_API_PREFIXES = ("/internal/", "/v1/")
HOT_PATH_PREFIXES = ("/internal/llm/", "/v1/", "/internal/tools/")
# Used for their before/after only, on answers given before the middleware chain runs.
_request_id = RequestIdMiddleware(lambda request: None)
_error_shape = ApiErrorShapeMiddleware(lambda request: None)

_mismatches = fastlane.version_mismatches()
if _mismatches:
    # Code written against other internals could misbehave quietly: Django's way is slower
    # but right (manage.py check warns too).
    logger.warning("fast lane and trimmed handlers off: %s", "; ".join(_mismatches))
    service_api_application = hot_path_application = django_application
    FAST_ROUTES: dict[str, fastlane.FastRoute] = {}
else:
    service_api_application = ServiceApiHandler()
    hot_path_application = HotPathHandler()
    # DAARION_FAST_LANE=0 sends the fast routes the usual way too (the parity test compares both).
    FAST_ROUTES = fastlane.routes() if settings.FAST_LANE else {}
fast_lane_application = FastLaneHandler(FAST_ROUTES)


async def lifespan(scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
    """Starts and stops what lives as long as the process: the MCP gateway's session manager;
    at shutdown, the usage records still queued in the process are flushed (or spilled)."""
    gateway = mcp_gateway()
    await receive()  # lifespan.startup
    try:
        async with gateway.lifespan():
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
    except Exception as exc:  # noqa: BLE001 - reported to the server, which refuses to start
        await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
        return
    # Usage records still queued in this process go to Redis, or to a spill file with Redis down.
    # Here and not only at exit: uvicorn ends itself with the signal it got, so atexit never runs.
    await asyncio.to_thread(flush_usage_at_exit)
    await send({"type": "lifespan.shutdown.complete"})


def too_large(scope: dict, size: int | None) -> HttpResponseBase:
    """The 413 for a body over MAX_BODY_BYTES in its door's shape: the envelope on the APIs
    (OpenAI's or Anthropic's on /v1), plain text elsewhere (admin), with the request id and
    access-log line every API answer has."""
    limit = settings.MAX_BODY_BYTES
    if not is_api_path(scope["path"]):
        response: HttpResponseBase = HttpResponse(
            f"Request body is over the limit of {limit} bytes.\n", status=413, content_type="text/plain; charset=utf-8"
        )
    elif size is None:
        response = error_response(
            413, "payload_too_large", f"request body is over the limit of {limit} bytes", {"limit_bytes": limit}
        )
    else:
        response = error_response(
            413,
            "payload_too_large",
            f"request body is {size} bytes; the limit is {limit}",
            {"limit_bytes": limit, "size_bytes": size},
        )
    response["Connection"] = "close"  # the rest of the body is never read
    request, _ = service_api_application.create_request(scope, io.BytesIO())
    if request is None:  # a scope Django refuses outright: no request to take an id from
        return response
    _request_id.before(request)
    return _request_id.after(request, _error_shape.after(request, response))


async def refuse_body(scope: dict, send: Callable[[dict], Awaitable[None]], size: int | None) -> None:
    """BodyLimit's refusal: JSON-RPC on /mcp (the gateway's own refusal), else too_large()."""
    if scope["path"] == MCP_PATH:
        return await mcp_refuse(
            scope,
            send,
            PayloadTooLarge(
                f"request body is over the limit of {settings.MAX_BODY_BYTES} bytes",
                details={"limit_bytes": settings.MAX_BODY_BYTES},
            ),
        )
    # The stubs type ASGI's `send` as taking a Mapping; ours is the server's, which does.
    await service_api_application.send_response(too_large(scope, size), send)  # type: ignore[arg-type]


async def django_router(scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "http":
        path = scope["path"]
        if path == MCP_PATH:
            # The MCP gateway is the SDK's ASGI app behind our auth (apps/tools/mcp/gateway.py),
            # not a Django view.
            return await mcp_gateway()(scope, receive, send)
        route = FAST_ROUTES.get(path)
        if route is not None and scope["method"] == route.method:
            return await fast_lane_application(scope, receive, send)
        if path.startswith(HOT_PATH_PREFIXES):
            return await hot_path_application(scope, receive, send)
        if path.startswith(SERVICE_API_PREFIXES):
            return await service_api_application(scope, receive, send)
    return await django_application(scope, receive, send)


if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    # Any ASGI callable works here; the stubs ask for an ASGIHandler and type __call__ loosely.
    _routed: App = ASGIStaticFilesHandler(django_router)  # type: ignore[arg-type, assignment]
else:
    _routed = django_router
# No door reads a body over the limit (daarion/body_limit.py); HTTP metrics and server spans
# around everything, refusals included (daarion/observability/http.py).
application = instrument(BodyLimit(_routed, limit=lambda: settings.MAX_BODY_BYTES, refuse=refuse_body))

# Everything loaded at start-up (Django, the apps, the URL conf with every API module and what
# they import, which Django would otherwise load on the first request) lives as long as the
# process. Frozen out of the collector's reach, it is no longer walked by every full
# collection: those took 80-140 ms on the LLM proxy under load (a p99 stall), and a few ms
# frozen (docs/BENCHMARKS.md). The collect first keeps start-up garbage from being frozen too.
get_resolver().url_patterns  # noqa: B018 - imports the URL conf now
gc.collect()
gc.freeze()
