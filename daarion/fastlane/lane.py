"""The fast lane: the hottest routes (today the LLM proxy's two) served without Django's middleware chain,
URL resolution and Ninja's per-operation machinery, by the same views and with the same rules.

`POST /internal/llm/proxy` and `POST /v1/chat/completions` are Ninja operations like every
other route (their OpenAPI docs, the same views). Served through the whole stack they cost
about 0.5 ms of CPU a call more than the same work done from a plain ASGI function
(bench/proxy_overhead.py: 1.2 vs 0.7 ms); this lane takes back 0.1-0.2 ms of it. Each
request runs the same pieces in the same order, taken from where the full stack takes them:

- the request-id, error-shape and body-size middleware (their `before` / `after` methods);
- the operation's own auth callable, the API's JSON parser (the project's strict one) and the
  view's body schema, with parse and validation failures raised as Ninja raises them;
- the view function itself, with the temporal response Ninja gives it for headers;
- the API's `create_response` for a returned dict and `on_exception` for every error, so each
  error renders through the one set of handlers in `daarion/api.py`.

What it leaves out: URL resolution (a dict lookup instead), the middleware objects' chain of
coroutines, Ninja's wrapper model around the body parameter, and the check of a view's result
against its response schema (the views here build exactly their schema's fields; the parity
test in daarion/tests/test_fastlane.py compares both paths on good and bad requests alike,
and checks that each route here is the Ninja operation it stands in for).
Apps register their routes (`register`, next to the Ninja operation); `daarion/asgi.py`
sends these routes here, and every other request takes the usual way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from daarion.middleware import ApiErrorShapeMiddleware, BodySizeLimitMiddleware, RequestIdMiddleware

View = Callable[[HttpRequest, Any, HttpResponse], Awaitable[Any]]


@dataclass(frozen=True)
class FastRoute:
    method: str
    api: NinjaAPI
    view: View
    schema: type[BaseModel]  # the view's `payload` body
    auth: Callable[[HttpRequest], Awaitable[Any]]


# path -> (method, the API's urls_namespace, view, body schema, auth), as apps register them.
_registered: dict[str, tuple[str, str, View, type[BaseModel], Callable[[HttpRequest], Awaitable[Any]]]] = {}


def register(
    path: str, *, method: str, api: str, view: View, schema: type[BaseModel], auth: Callable[[HttpRequest], Awaitable[Any]]
) -> None:
    """Serves `method path` through the lane: an app calls this beside the Ninja operation it
    stands in for (the same view, body schema and auth), in the module that defines it. `api`
    is the urls_namespace of the NinjaAPI the operation is mounted on ("internal", "v1")."""
    _registered[path] = (method, api, view, schema, auth)


@cache
def routes() -> dict[str, FastRoute]:
    """Full path -> route. Built on first use: importing the APIs imports every app's router,
    and with it each app's registrations."""
    from daarion import api as apis

    by_namespace = {ninja_api.urls_namespace: ninja_api for ninja_api in (apis.internal_api, apis.openai_api)}
    return {
        path: FastRoute(method, by_namespace[namespace], view, schema, auth)
        for path, (method, namespace, view, schema, auth) in _registered.items()
    }


def _never_called(request: HttpRequest) -> None:  # the middleware below are used for their methods only
    raise AssertionError("the fast lane calls the middleware's before/after, never its chain")


# In MIDDLEWARE's order; the browser middleware is left out on every service API path anyway.
_request_id = RequestIdMiddleware(_never_called)
_error_shape = ApiErrorShapeMiddleware(_never_called)
_body_size = BodySizeLimitMiddleware(_never_called)


async def respond(request: HttpRequest, route: FastRoute) -> HttpResponseBase:
    """What the full stack answers for `request` on `route`."""
    _request_id.before(request)
    response = _body_size.before(request)
    if response is None:
        try:
            response = await _run(request, route)
        except Exception as exc:  # noqa: BLE001 - rendered by the API's handlers, as Ninja does
            response = route.api.on_exception(request, exc)
    response = _error_shape.after(request, response)
    return _request_id.after(request, response)


async def _run(request: HttpRequest, route: FastRoute) -> HttpResponseBase:
    # Ninja's order: auth first (a bad body without a token is a 401), then the body.
    request.auth = await route.auth(request)  # type: ignore[attr-defined]
    payload = _payload(request, route)
    temporal = route.api.create_temporal_response(request)
    result = await route.view(request, payload, temporal)
    if isinstance(result, HttpResponseBase):
        return result
    return route.api.create_response(request, result, temporal_response=temporal)


def _payload(request: HttpRequest, route: FastRoute) -> BaseModel:
    if not request.body:
        raise NinjaValidationError([{"type": "missing", "loc": ("body", "payload"), "msg": "Field required"}])
    try:
        data = route.api.parser.parse_body(request)
    except Exception as exc:  # noqa: BLE001 - the message Ninja gives any unreadable body
        message = "Cannot parse request body"
        if settings.DEBUG:
            message += f" ({exc})"
        raise HttpError(400, message) from exc
    try:
        return route.schema.model_validate(data)
    except PydanticValidationError as exc:
        raise NinjaValidationError([_ninja_error(error) for error in exc.errors(include_url=False)]) from exc


def _ninja_error(error: Any) -> dict[str, Any]:
    """A pydantic error as Ninja reports a body parameter's: located under body.payload,
    without the input, a ctx exception as its text."""
    out = {key: value for key, value in error.items() if key != "input"}
    out["loc"] = ("body", "payload", *error["loc"])
    ctx = out.get("ctx")
    if isinstance(ctx, dict) and isinstance(ctx.get("error"), Exception):
        out["ctx"] = {**ctx, "error": str(ctx["error"])}
    return out
