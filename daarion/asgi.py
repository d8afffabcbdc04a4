"""ASGI entry point (the production server): `uvicorn daarion.asgi:application`.

Static files (the admin's CSS/JS, the dashboard's chart library) are served by Django's
ASGI static handler unless DAARION_SERVE_STATIC=0 (put a CDN or nginx in front instead);
it answers only under STATIC_URL and passes every other request straight through.

The service APIs (`/internal/`, `/v1/`) go through a second Django handler whose middleware
chain leaves out the browser middleware (sessions, CSRF, user auth, messages, clickjacking,
security and common headers). Those are sync `MiddlewareMixin` classes: under ASGI each
one hops to a thread twice per request, which cost the LLM proxy about a third of its CPU
per call (bench/proxy_overhead.py), while token-authenticated JSON APIs use none of them.
Everything else (admin, /api/registry with its session auth, /health) keeps the full chain;
/mcp is not Django at all but the MCP SDK's ASGI app behind toolcore's gateway (apps/tools/mcp/).
What an API answer still wants of the left-out middleware (a Content-Length, `nosniff`, and
`no-store`) the handler adds itself (api_headers).

The hot paths — the LLM proxy (`/internal/llm/`, `/v1/`) and toolcore (`/internal/tools/`) —
go through HotPathHandler, which also leaves out Django's per-request thread work. Django's
ASGIHandler wraps every request in a `ThreadSensitiveContext` and sends `request_started` /
`request_finished` through `sync_to_async`: the first of those starts a fresh thread and joins
it at the end, and each is a hop to a thread and back (together about a quarter of the LLM
proxy's CPU per call after the browser middleware was gone). HotPathHandler sends neither signal: their
only receivers are Django's `reset_queries`, `close_old_connections`, `close_caches` and
`reset_urlconf`, which look after the calling thread's database and cache connections and a
per-request urlconf, and the hot path opens no connection there and sets no urlconf
(`apps/llm/tests/test_asgi_paths.py` checks that no other receiver is connected). It also
keeps the request body in memory: every body is capped at MAX_BODY_BYTES before it is read, by
the BodyLimit guard in front of the whole application (daarion/body_limit.py), which answers a
body over the limit in its door's shape (too_large, refuse_body).
Their views are async and read no database on the hot path; a sync database call added there
must use `sync_to_async(thread_sensitive=False)` (as LiveSnapshot.aget does).

The two hottest routes, `POST /internal/llm/proxy` and `POST /v1/chat/completions`, go one
step further, through FastLaneHandler: `daarion/fastlane.py` runs their middleware, auth,
parsing, validation, view and error handlers directly, without the middleware chain, URL
resolution and Ninja's operation machinery (0.1-0.2 ms of CPU a call). DAARION_FAST_LANE=0
turns it off.
"""

import asyncio
import gc
import io
import os
from collections.abc import Awaitable, Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after setup
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.http.response import HttpResponseBase  # noqa: E402
from django.urls import get_resolver, set_script_prefix  # noqa: E402

from apps.llm.usage import flush_at_exit as flush_usage_at_exit  # noqa: E402
from daarion.observability.http import instrument  # noqa: E402
from apps.tools.mcp.gateway import gateway as mcp_gateway  # noqa: E402
from apps.tools.mcp.gateway import refuse as mcp_refuse  # noqa: E402
from daarion import fastlane  # noqa: E402
from daarion.body_limit import BodyLimit  # noqa: E402
from daarion.errors import PayloadTooLarge, error_response  # noqa: E402
from daarion.middleware import ApiErrorShapeMiddleware, RequestIdMiddleware, is_api_path  # noqa: E402

MCP_PATH = "/mcp"

# Left out of the service APIs' chain; anything not listed here runs for them too.
BROWSER_ONLY_MIDDLEWARE = frozenset({
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "daarion.middleware.AdminActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # admin sign-in throttling
})
SERVICE_API_PREFIXES = ("/internal/", "/v1/")
HOT_PATH_PREFIXES = ("/internal/llm/", "/v1/", "/internal/tools/")


def api_headers(response: HttpResponseBase) -> None:
    """What the left-out browser middleware would otherwise have added and an API still wants:
    a Content-Length for a body sent whole (CommonMiddleware's job; without it every answer
    went out chunked), `nosniff`, and `no-store` unless a view chose its own caching (answers
    carry tokens' scopes, usage and, for agents:secrets, secrets)."""
    if not response.streaming and "Content-Length" not in response:
        response["Content-Length"] = str(len(response.content))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")


class ServiceApiHandler(ASGIHandler):
    """Django's ASGI handler with MIDDLEWARE minus BROWSER_ONLY_MIDDLEWARE, and the headers
    every service API answer carries (api_headers)."""

    async def send_response(self, response: HttpResponseBase, send) -> None:  # noqa: ANN001
        api_headers(response)
        await super().send_response(response, send)

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE; it runs once, here at import,
        # before any request, so swapping the list around the call is safe.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path not in BROWSER_ONLY_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


# Used for their before/after only, on answers given before the middleware chain runs.
_request_id = RequestIdMiddleware(lambda request: None)
_error_shape = ApiErrorShapeMiddleware(lambda request: None)


class HotPathHandler(ServiceApiHandler):
    """ServiceApiHandler without Django's per-request thread work (see above)."""

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def read_body(self, receive) -> io.BytesIO:  # noqa: ANN001
        # Bounded by the BodyLimit guard in front of the whole application (daarion/body_limit.py).
        body = io.BytesIO()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            body.write(message.get("body", b""))
            if not message.get("more_body", False):
                body.seek(0)
                return body

    async def handle(self, scope, receive, send) -> None:  # noqa: ANN001
        """ASGIHandler.handle (Django 5.2) without the request signals, the body in memory."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, early = self.create_request(scope, body_file)
        if request is None:
            await self.send_response(early, send)
            early.close()
            return

        async def respond() -> object:
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while we were sending
            return response

        # As Django does: a disconnect while the view runs cancels it (and with it the
        # upstream call it waits on).
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        responding = asyncio.create_task(respond())
        await asyncio.wait((disconnect, responding), return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnect, responding):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if not responding.cancelled():
            # HttpResponse.close() without its request_finished signal (see above).
            for closer in responding.result()._resource_closers:
                closer()
        body_file.close()
        # A cancelled task keeps its CancelledError, whose traceback holds this frame, which
        # holds the task: a reference cycle per request, left to the cyclic collector (full
        # collections of tens of ms under load). Dropping the locals breaks it.
        del disconnect, responding, task


class FastLaneHandler(HotPathHandler):
    """HotPathHandler whose requests go to daarion.fastlane instead of the middleware chain,
    URL resolution and Ninja's operation wrapper (see that module)."""

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await fastlane.respond(request, FAST_ROUTES[request.path])


service_api_application = ServiceApiHandler()
hot_path_application = HotPathHandler()
fast_lane_application = FastLaneHandler()
# DAARION_FAST_LANE=0 sends the fast routes the usual way too (the parity test compares both).
FAST_ROUTES = fastlane.routes() if settings.FAST_LANE else {}


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
        response: HttpResponseBase = HttpResponse(f"Request body is over the limit of {limit} bytes.\n", status=413,
                                                  content_type="text/plain; charset=utf-8")
    elif size is None:
        response = error_response(413, "payload_too_large", f"request body is over the limit of {limit} bytes",
                                  {"limit_bytes": limit})
    else:
        response = error_response(413, "payload_too_large", f"request body is {size} bytes; the limit is {limit}",
                                  {"limit_bytes": limit, "size_bytes": size})
    response["Connection"] = "close"  # the rest of the body is never read
    request, _ = service_api_application.create_request(scope, io.BytesIO())
    if request is None:  # a scope Django refuses outright: no request to take an id from
        return response
    _request_id.before(request)
    return _request_id.after(request, _error_shape.after(request, response))


async def refuse_body(scope: dict, send: Callable[[dict], Awaitable[None]], size: int | None) -> None:
    """BodyLimit's refusal: JSON-RPC on /mcp (the gateway's own refusal), else too_large()."""
    if scope["path"] == MCP_PATH:
        return await mcp_refuse(scope, send, PayloadTooLarge(
            f"request body is over the limit of {settings.MAX_BODY_BYTES} bytes",
            details={"limit_bytes": settings.MAX_BODY_BYTES}))
    await service_api_application.send_response(too_large(scope, size), send)


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

    _routed = ASGIStaticFilesHandler(django_router)
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
