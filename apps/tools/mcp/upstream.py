"""The SDK client side of the gateway: listing and calling the tools of an upstream MCP server.

Egress follows the http executor's rules (apps/tools/executors/http.py): the URL's host must be
in TOOLS_HTTP_ALLOWED_HOSTS, every address it resolves to is checked (internal addresses only
for a host listed exactly, metadata addresses only when listed by IP), and the connection goes
to the checked address only (a pinned network backend), so a refused upstream is refused
before any connection and a second DNS answer cannot swap the address. The SDK follows only
same-origin redirects, which keep the pin; no environment proxy is used.

The upstream's protocol revision is found by the sync (`mode="auto"`: a server/discover
probe, else the initialize handshake) and kept on the server, so a call speaks it at once:
one POST on a long-lived shared client (pooled keep-alive connections to the checked address)
for a 2026-07-28 upstream; the handshake and the call on a client of its own for an older one.
The address is checked on every call, and a new address gets a new pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2
import mcp_types as types
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from apps.tools.executors.http import CheckedTarget, TargetRefused, check_target

__all__ = ["TRANSPORT_ERROR_KEY", "TargetRefused", "UpstreamListing", "upstream_call_tool", "upstream_list_tools"]

logger = logging.getLogger(__name__)

USER_AGENT = "daarion-toolcore/1 (mcp gateway)"
_MAX_PAGES = 100


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to the one address check_target approved for the upstream's host."""

    def __init__(self, target: CheckedTarget) -> None:
        self._target = target
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
    ) -> httpcore2.AsyncNetworkStream:
        if (host.strip("[]").rstrip(".").lower(), port) != (self._target.host, self._target.port):
            raise httpcore2.ConnectError(f"no checked address for {host}:{port}; refusing to connect")
        return await self._inner.connect_tcp(
            self._target.ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not MCP upstreams")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_ssl: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs milliseconds, and a call builds a client.
    if not _ssl:
        _ssl.append(
            ssl.create_default_context(cafile=settings.TOOLS_HTTP_CA_BUNDLE)
            if settings.TOOLS_HTTP_CA_BUNDLE
            else httpx2.create_ssl_context(trust_env=False)
        )
    return _ssl[0]


# Headers of the call in progress (secret headers, the request id). Set by the calling task;
# the SDK runs each POST with the sender's context, so the transport sees the caller's value.
_call_headers: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("mcp_call_headers", default={})
TRANSPORT_ERROR_KEY = "daarion/transport_error"


def _failure_response(request: httpx2.Request, status: int, kind: str, message: str) -> httpx2.Response:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message, "data": {TRANSPORT_ERROR_KEY: kind}}}
    ).encode()
    return httpx2.Response(status, headers={"content-type": "application/json"}, content=body, request=request)


class _SharedTransport(httpx2.AsyncBaseTransport):
    """A pooled transport many clients use (closing one leaves it open). It adds the calling
    task's headers, and answers a failed exchange (connect, timeout) as a JSON-RPC error: the
    SDK client then fails that one request with our message instead of its whole connection."""

    def __init__(self, inner: httpx2.AsyncHTTPTransport, where: str) -> None:
        self.inner, self.where = inner, where

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        for name, value in _call_headers.get().items():
            request.headers[name] = value
        try:
            return await self.inner.handle_async_request(request)
        except httpx2.TimeoutException as exc:
            return _failure_response(request, 504, "timeout", f"{self.where} did not answer in time ({type(exc).__name__})")
        except httpx2.TransportError as exc:
            return _failure_response(
                request, 502, "connect_error", f"could not connect to {self.where}: {exc or type(exc).__name__}"
            )

    async def aclose(self) -> None:
        pass


# (loop, host, port, checked ip) -> a pooled transport whose every connection goes to that ip.
# Keyed by the address check_target approved for this call, so a host that now resolves
# elsewhere gets a new pool (and the old address is never used again); weakly by the loop,
# as a transport cannot cross loops. Keeping connections open saves a TCP (and TLS) handshake
# per call.
_transports: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int, str], _SharedTransport]]" = (
    weakref.WeakKeyDictionary()
)
_MAX_POOLS_PER_LOOP = 256


def _transport(target: CheckedTarget) -> _SharedTransport:
    pools = _transports.setdefault(asyncio.get_running_loop(), {})
    key = (target.host, target.port, target.ip)
    shared = pools.get(key)
    if shared is None:
        if len(pools) >= _MAX_POOLS_PER_LOOP:
            pools.clear()  # rare (hundreds of upstreams or addresses): start over rather than grow
        inner = httpx2.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)
        # httpx2 has no public hook for the network backend; the pool is rebuilt with ours (as
        # the http executor does for httpx).
        inner._pool = httpcore2.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=50,
            max_keepalive_connections=10,
            keepalive_expiry=30,
            network_backend=_PinnedBackend(target),
        )
        shared = pools[key] = _SharedTransport(inner, f"{target.host}:{target.port}")
    return shared


def _http_client(target: CheckedTarget, headers: Mapping[str, str], timeout: float) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=_transport(target),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, **headers},
        timeout=httpx2.Timeout(timeout, connect=max(min(timeout * 0.8, 5.0), 0.05)),
    )


@contextlib.asynccontextmanager
async def _connected(url: str, headers: Mapping[str, str], timeout: float, mode: str) -> AsyncIterator[Client]:
    """A client of its own for this call (the sync's listing, a handshake-era upstream)."""
    target = await check_target(url)  # TargetRefused: no connection was opened
    async with _http_client(target, headers, timeout) as http:
        async with Client(
            streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=timeout, cache=None
        ) as client:
            yield client


class _SharedClient:
    """One long-lived SDK client for a 2026-07-28 upstream, shared by the calls of one loop.

    That revision is one self-contained POST per request (no session), so calls need no
    client of their own; building one per call cost about a millisecond. The client lives in a
    task of its own (its task group must be left by the task that entered it) until the loop
    ends or it fails; a failed one is replaced by the next call.
    """

    def __init__(self, url: str, target: CheckedTarget, version: str) -> None:
        self.url, self.target, self.version = url, target, version
        self.client: Client | None = None
        self.dead = False
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._serve(), name=f"mcp-upstream {target.host}")

    async def _serve(self) -> None:
        try:
            async with _http_client(self.target, {}, 300.0) as http:
                async with Client(streamable_http_client(self.url, http_client=http), mode=self.version, cache=None) as client:
                    self.client = client
                    self.ready.set()
                    await asyncio.Event().wait()  # until the loop ends (cancelled) or the client fails
        except asyncio.CancelledError:
            raise
        except BaseException:  # noqa: BLE001 - logged; the next call builds a new client
            logger.warning("shared MCP client of %s ended", self.url, exc_info=True)
        finally:
            self.dead = True
            self.ready.set()


_shared: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str, str], _SharedClient]]" = (
    weakref.WeakKeyDictionary()
)


async def _shared_client(url: str, target: CheckedTarget, version: str) -> Client:
    clients = _shared.setdefault(asyncio.get_running_loop(), {})
    key = (url, target.ip, version)
    holder = clients.get(key)
    if holder is None or holder.dead:
        if len(clients) >= _MAX_POOLS_PER_LOOP:
            for old in clients.values():
                old.task.cancel()
            clients.clear()
        holder = clients[key] = _SharedClient(url, target, version)
    await holder.ready.wait()
    if holder.client is None:
        raise ConnectionError(f"could not open an MCP client for {url}")
    return holder.client


@dataclass(frozen=True)
class UpstreamListing:
    tools: list[types.Tool]
    protocol_version: str  # the modern revision spoken, or "" for the handshake era


async def upstream_list_tools(*, url: str, headers: Mapping[str, str], timeout: float) -> UpstreamListing:
    """Every tool of the upstream (all pages). Raises TargetRefused, MCPError, httpx2 errors."""
    async with _connected(url, headers, timeout, "auto") as client:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        version = client.protocol_version
        return UpstreamListing(tools=tools, protocol_version=version if version in MODERN_PROTOCOL_VERSIONS else "")


def call_mode(protocol_version: str) -> str:
    """The SDK client mode for a call: the modern revision the sync found, else the handshake."""
    return protocol_version if protocol_version in MODERN_PROTOCOL_VERSIONS else "legacy"


async def upstream_call_tool(
    *, url: str, headers: Mapping[str, str], timeout: float, protocol_version: str, name: str, arguments: dict
) -> types.CallToolResult:
    """One tools/call on the upstream. Raises TargetRefused, MCPError (a transport failure is an
    MCPError whose data has TRANSPORT_ERROR_KEY), httpx2 errors."""
    request = types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments))
    # session.send_request, not Client.call_tool: the latter re-lists the upstream's tools to
    # check structuredContent, a second round trip per call; toolcore checks the result
    # against the output schema it synced (tool_call) instead.
    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        target = await check_target(url)  # every call: refused before any connection
        client = await _shared_client(url, target, protocol_version)
        token = _call_headers.set(dict(headers))
        try:
            return await client.session.send_request(request, types.CallToolResult, request_read_timeout_seconds=timeout)
        finally:
            _call_headers.reset(token)
    async with _connected(url, headers, timeout, call_mode(protocol_version)) as client:
        return await client.session.send_request(request, types.CallToolResult)
