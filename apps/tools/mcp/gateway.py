"""The ASGI app at /mcp: our checks in front of the SDK's streamable HTTP session manager.

Before the SDK reads a byte of the body, a request must pass, in this order:
- the Origin rule (a browser page may call only from our own host or a listed origin: no DNS
  rebinding from a web page);
- a service token with the `tools` scope (`Authorization: Bearer ...`);
- an acting agent (`Principal.acting_agent`, as on every door): `X-Agent-Id`, which the token
  must be allowed to act for, or else the token's only agent.
A refusal is a JSON-RPC error body at its HTTP status (401 with `WWW-Authenticate`, 403, 422
`agent_required`, 503 `database_unavailable` / `redis_unavailable` with `Retry-After` during an
outage), so the SDK client raises it with our message instead of a generic "server returned an error";
`error.data` has the house error's `type` and `details`.

The manager is stateless (a fresh transport per request, no session ids), so any web process
can answer any request; with JSON responses (no SSE) a request is one JSON answer. It speaks
every revision the SDK speaks: the 2026-07-28 per-request envelope and the initialize handshake
of 2024-11-05 .. 2025-11-25. List-changed events reach 2026-07-28 clients on a
`subscriptions/listen` stream (an SSE answer to that one request; apps/tools/mcp/events.py);
the older revisions would need a session's standing stream, which a stateless server has not,
so they are told `listChanged: false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
from django.conf import settings
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from apps.tools.mcp.events import RegistryEvents, RegistryListenHandler
from apps.tools.mcp.server import SCOPE_KEY, Caller, build_server
from apps.access.auth import Principal, authenticate_authorization
from daarion.infra.errors import DaarionError, Forbidden
from daarion.log import request_id_var
from daarion.infra.outages import outage_error

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("daarion.access")  # the same access log as the APIs' lines

TOOLS_SCOPE = "tools"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    # Lower-case names; a repeated header keeps its first value (none of ours may repeat).
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _agent_of(headers: dict[str, str], principal: Principal) -> str:
    # Toolcore's permissions are per agent, so the gateway always needs one.
    return principal.acting_agent(headers.get("x-agent-id", "").strip() or None, source="X-Agent-Id header", required=True)


def _check_origin(headers: dict[str, str]) -> None:
    origin = headers.get("origin")
    if not origin:
        return
    netloc = urlsplit(origin).netloc.lower()
    allowed = {o.lower() for o in settings.TOOLS_MCP_ALLOWED_ORIGINS}
    if netloc != headers.get("host", "").lower() and origin.lower() not in allowed and netloc not in allowed:
        raise Forbidden(f"origin {origin!r} may not use this MCP server", type="origin_not_allowed")


def _refusal(exc: DaarionError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data: dict[str, Any] = {"type": exc.type}
    if exc.details is not None:
        data["details"] = exc.details
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": types.INVALID_REQUEST, "message": exc.message, "data": data}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1", "replace")),
    ]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="daarion"'))
    headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers.items()]
    return exc.status, headers, body


def _request_id_of(headers: dict[str, str]) -> str:
    incoming = headers.get("x-request-id", "")
    # A caller's id is echoed back, so only a short, boring one is taken (as for the APIs).
    return incoming if _REQUEST_ID_RE.match(incoming) else f"mcp-{uuid.uuid4().hex}"


async def refuse(scope: dict[str, Any], send: Any, exc: DaarionError) -> None:
    """Answers `exc` as the gateway answers its own refusals, with the access-log line: for
    refusals made in front of the gateway (the body limit in daarion/asgi.py)."""
    request_id = _request_id_of(_headers(scope))
    status, headers, body = _refusal(exc, request_id)
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    access_logger.info(
        "%s %s %s",
        scope.get("method"),
        scope.get("path"),
        status,
        extra={
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": 0.0,
            "token": None,
            "agent_id": None,
            "streaming": False,
            "request_id": request_id,
        },
    )


class McpGateway:
    """ASGI callable for /mcp. One per process; the session manager's task group is started by
    the ASGI lifespan (`lifespan()`), or on the first request when the server sends no lifespan."""

    def __init__(self) -> None:
        self.events = RegistryEvents()
        self.listen = RegistryListenHandler(self.events, max_subscriptions=settings.TOOLS_MCP_MAX_LISTEN_STREAMS)
        self.server = build_server(self.listen)
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=True,
            max_request_body_size=settings.MAX_BODY_BYTES,
            # Host and Origin are checked by us (_check_origin); the SDK's own check would refuse
            # every host but localhost unless configured twice.
            security_settings=None,
        )
        self._started: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with self.manager.run():
            self._started = asyncio.Event()
            self._started.set()
            try:
                yield
            finally:
                # Listen streams end gracefully (their final frame sent) instead of holding
                # the shutdown until the server's grace period runs out.
                self.listen.close()
                await self.events.aclose()

    async def _ensure_started(self) -> None:
        if self._started is not None:
            await self._started.wait()
            return
        # No lifespan (e.g. `uvicorn --lifespan off`): run the manager in a task of its own
        # for the life of the loop.
        started = self._started = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await asyncio.Event().wait()

        self._runner = asyncio.get_running_loop().create_task(run())
        await started.wait()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = _request_id_of(headers)
        log_token = request_id_var.set(request_id)
        outcome = {"status": 0, "token": None, "agent": None}
        try:
            await self._serve(scope, receive, send, headers, request_id, outcome)
        finally:
            access_logger.info(
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                outcome["status"],
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": outcome["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "token": outcome["token"],
                    "agent_id": outcome["agent"],
                    "streaming": False,
                },
            )
            request_id_var.reset(log_token)

    async def _serve(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str], request_id: str, outcome: dict[str, Any]
    ) -> None:
        try:
            _check_origin(headers)
            principal = await authenticate_authorization(headers.get("authorization", ""), TOOLS_SCOPE)
            outcome["token"] = principal.name
            agent_id = _agent_of(headers, principal)
            outcome["agent"] = agent_id
        except Exception as exc:  # refusals, and outages as a named 503
            refusal = exc if isinstance(exc, DaarionError) else outage_error(exc)
            if refusal is None:
                raise
            status, response_headers, body = _refusal(refusal, request_id)
            outcome["status"] = status
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = Caller(
            principal=principal, agent_id=agent_id, microdao_id=headers.get("x-microdao-id", "").strip(), request_id=request_id
        )
        await self._ensure_started()

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode("latin-1", "replace")),
                        (b"x-content-type-options", b"nosniff"),
                        (b"cache-control", b"no-store"),
                    ],
                }
            await send(message)

        await self.manager.handle_request(scope, receive, send_with_headers)


_gateway: McpGateway | None = None


def gateway() -> McpGateway:
    """The process's gateway (built on first use, after Django is set up)."""
    global _gateway
    if _gateway is None:
        _gateway = McpGateway()
    return _gateway
