"""ASGI entry point (the production server): `uvicorn daarion.asgi:application`.

Static files (the admin's CSS/JS, the dashboard's chart library) are served by Django's
ASGI static handler unless DAARION_SERVE_STATIC=0 (put a CDN or nginx in front instead);
it answers only under STATIC_URL and passes every other request straight through.

The service APIs (`/internal/`, `/v1/`) go through a second Django handler whose middleware
chain leaves out the browser middleware (sessions, CSRF, user auth, messages, clickjacking,
security and common headers). Those are sync `MiddlewareMixin` classes: under ASGI each
one hops to a thread twice per request, which cost the LLM proxy about a third of its CPU
per call (bench/proxy_overhead.py), while token-authenticated JSON APIs use none of them.
Everything else (admin, /api/registry with its session auth, /mcp, /health) keeps the full chain.

The hot paths — the LLM proxy (`/internal/llm/`, `/v1/`) and toolcore (`/internal/tools/`) —
also skip Django's per-request
`ThreadSensitiveContext`: with it, the first thread-sensitive `sync_to_async` of a request
(Django's own request_started / request_finished signal receivers) starts a fresh thread and
joins it at the end, on every request. Without it those few microseconds of sync work run on
asgiref's shared thread. Their views are async and read no database on the hot path; a
sync database call added there would be serialised across requests, so use
`sync_to_async(thread_sensitive=False)` for it (as LiveSnapshot.aget does).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after setup
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

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
})
SERVICE_API_PREFIXES = ("/internal/", "/v1/")
HOT_PATH_PREFIXES = ("/internal/llm/", "/v1/", "/internal/tools/")


class ServiceApiHandler(ASGIHandler):
    """Django's ASGI handler with MIDDLEWARE minus BROWSER_ONLY_MIDDLEWARE."""

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
    """ServiceApiHandler without the per-request ThreadSensitiveContext (see above)."""

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


service_api_application = ServiceApiHandler()
hot_path_application = HotPathHandler()


async def django_router(scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
    if scope["type"] == "http":
        path = scope["path"]
        if path.startswith(HOT_PATH_PREFIXES):
            return await hot_path_application(scope, receive, send)
        if path.startswith(SERVICE_API_PREFIXES):
            return await service_api_application(scope, receive, send)
    return await django_application(scope, receive, send)


if os.environ.get("DAARION_SERVE_STATIC", "1") not in {"0", "false", "no"}:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_router)
else:
    application = django_router
