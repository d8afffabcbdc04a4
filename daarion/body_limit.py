"""The request body limit at the door, before any handler reads a byte (every path: APIs, /v1,
/mcp, /admin, /health).

Django's ASGIHandler spools the whole body to a temporary file before any middleware runs, and
the MCP SDK reads it whole before its own size check, so a limit kept in middleware or a view
comes after the cost. This ASGI layer wraps the whole application instead:

- a `Content-Length` over the limit is refused at once, on the header alone (O(1): the hot
  path pays one header scan, nothing per body chunk);
- a body without one (chunked) is counted as the application receives it, and the read stops
  at the first chunk past the limit: the application's `receive` raises BodyOverLimit, which
  unwinds the handler before it has answered, and the refusal is sent here instead.

The refusal is rendered by the caller-given `refuse(scope, send, size)` in the door's own shape
(asgi.py), with `Connection: close` so the server drops the rest of the body instead of
draining it for the next request on the connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Refuse = Callable[[Scope, Send, "int | None"], Awaitable[None]]


class BodyOverLimit(BaseException):
    """Raised from `receive` when a body without a Content-Length passes the limit.

    A BaseException on purpose: the MCP SDK (and any handler written the same way) turns an
    `Exception` raised while it reads the body into a 500 answer of its own; this must unwind
    the handler unanswered so the door can answer 413.
    """


def announced_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when there is none (or it is not a number: the
    server and Django refuse that themselves)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" or name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _over_limit(exc: BaseException) -> bool:
    if isinstance(exc, BodyOverLimit):
        return True
    # An anyio task group wraps what its tasks raise (the MCP SDK runs in one).
    if isinstance(exc, BaseExceptionGroup):
        return any(_over_limit(inner) for inner in exc.exceptions)
    return False


class BodyLimit:
    """ASGI middleware: bodies over `limit()` bytes are refused before they are read."""

    def __init__(self, app: App, *, limit: Callable[[], int], refuse: Refuse) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        announced = announced_length(scope)
        if announced is not None:
            if announced > limit:
                return await self.refuse(scope, send, announced)
            # The server never passes on more than the announced length: nothing to count.
            return await self.app(scope, receive, send)

        received = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyOverLimit()
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BaseException as exc:
            if not _over_limit(exc):
                raise
            if not started:  # an answer already under way is left to end as it does
                await self.refuse(scope, send, None)
