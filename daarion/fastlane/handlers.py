"""Django's ASGI handler, trimmed for the service APIs (the first two mirror Django 5.2's
`ASGIHandler`; versions.py checks that Django is the release they were written against).

- ServiceApiHandler: MIDDLEWARE minus the browser middleware, for `/internal/` and `/v1/`.
  Those are sync `MiddlewareMixin` classes: under ASGI each one hops to a thread twice per
  request, which cost the LLM proxy about a third of its CPU per call, while
  token-authenticated JSON APIs use none of them. What an API answer still wants of them (a
  Content-Length, `nosniff`, and `no-store`) the handler adds itself (api_headers).
- HotPathHandler: also without Django's per-request thread work, for the hot paths (the LLM
  proxy and toolcore). Django's ASGIHandler wraps every request in a `ThreadSensitiveContext`
  and sends `request_started` / `request_finished` through `sync_to_async`: the first starts a
  fresh thread and joins it at the end, and each is a hop to a thread and back (together about
  a quarter of the proxy's CPU per call after the browser middleware was gone). Their only
  receivers are Django's `reset_queries`, `close_old_connections`, `close_caches` and
  `reset_urlconf`, which look after the calling thread's database and cache connections and a
  per-request urlconf; the hot path opens no connection there and sets no urlconf
  (`apps/llm/tests/test_asgi_paths.py` checks that no other receiver is connected). It keeps
  the request body in memory: every body is capped before it is read by the BodyLimit guard in
  front of the whole application (daarion/body_limit.py).
  Their views are async and read no database on the hot path; a sync database call added there
  must use `sync_to_async(thread_sensitive=False)` (as LiveSnapshot.aget does).
- FastLaneHandler: the registered fast routes, through lane.py.
"""

from __future__ import annotations

import asyncio
import io
from typing import cast

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

from daarion.fastlane.lane import FastRoute, respond

# Left out of the service APIs' chain; anything not listed here runs for them too.
BROWSER_ONLY_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "daarion.middleware.AdminActorMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "axes.middleware.AxesMiddleware",  # admin sign-in throttling
    }
)


def api_headers(response: HttpResponseBase) -> None:
    """What the left-out browser middleware would otherwise have added and an API still wants:
    a Content-Length for a body sent whole (CommonMiddleware's job; without it every answer
    went out chunked), `nosniff`, and `no-store` unless a view chose its own caching (answers
    carry tokens' scopes, usage and, for agents:secrets, secrets)."""
    if not response.streaming and "Content-Length" not in response:
        response["Content-Length"] = str(len(cast(HttpResponse, response).content))  # not streaming: has .content
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
            assert early is not None  # create_request returns a request or the answer instead
            await self.send_response(early, send)
            early.close()
            return

        async def respond() -> HttpResponseBase:
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
            for closer in responding.result()._resource_closers:  # type: ignore[attr-defined]  # Django-private, not in the stubs
                closer()
        body_file.close()
        # A cancelled task keeps its CancelledError, whose traceback holds this frame, which
        # holds the task: a reference cycle per request, left to the cyclic collector (full
        # collections of tens of ms under load). Dropping the locals breaks it.
        del disconnect, responding, task


class FastLaneHandler(HotPathHandler):
    """HotPathHandler whose requests go to the fast lane (lane.py) instead of the middleware
    chain, URL resolution and Ninja's operation wrapper."""

    def __init__(self, routes: dict[str, FastRoute]) -> None:
        super().__init__()
        self.routes = routes

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await respond(request, self.routes[request.path])
