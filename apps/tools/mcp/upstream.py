"""The SDK client side of the gateway: listing and calling the tools of an upstream MCP server.

Egress follows the http executor's rules (apps/tools/executors/http.py): the URL's host must be
in TOOLS_HTTP_ALLOWED_HOSTS, every address it resolves to is checked (internal addresses only
for a host listed exactly, metadata addresses only when listed by IP), and the connection goes
to the checked address only (a pinned network backend), so a refused upstream is refused
before any connection and a second DNS answer cannot swap the address. The SDK follows only
same-origin redirects, which keep the pin; no environment proxy is used.

The upstream's protocol revision is found by the sync (`mode="auto"`: a server/discover
probe, else the initialize handshake) and kept on the server, so a call speaks it at once: one
POST for a 2026-07-28 upstream, the handshake and the call for an older one.
"""

from __future__ import annotations

import contextlib
import ssl
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

__all__ = ["TargetRefused", "UpstreamListing", "upstream_call_tool", "upstream_list_tools"]

USER_AGENT = "daarion-toolcore/1 (mcp gateway)"
_MAX_PAGES = 100


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to the one address check_target approved for the upstream's host."""

    def __init__(self, target: CheckedTarget) -> None:
        self._target = target
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        if (host.strip("[]").rstrip(".").lower(), port) != (self._target.host, self._target.port):
            raise httpcore2.ConnectError(f"no checked address for {host}:{port}; refusing to connect")
        return await self._inner.connect_tcp(self._target.ip, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not MCP upstreams")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_ssl: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs milliseconds, and a call builds a client.
    if not _ssl:
        _ssl.append(ssl.create_default_context(cafile=settings.TOOLS_HTTP_CA_BUNDLE) if settings.TOOLS_HTTP_CA_BUNDLE
                    else httpx2.create_ssl_context(trust_env=False))
    return _ssl[0]


def _http_client(target: CheckedTarget, headers: Mapping[str, str], timeout: float) -> httpx2.AsyncClient:
    transport = httpx2.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)
    # httpx2 has no public hook for the network backend; the pool is rebuilt with ours (as the
    # http executor does for httpx).
    transport._pool = httpcore2.AsyncConnectionPool(ssl_context=_ssl_context(), max_connections=4,
                                                    network_backend=_PinnedBackend(target))
    return httpx2.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False,
        headers={"User-Agent": USER_AGENT, **headers},
        timeout=httpx2.Timeout(timeout, connect=max(min(timeout * 0.8, 5.0), 0.05)),
    )


@contextlib.asynccontextmanager
async def _connected(url: str, headers: Mapping[str, str], timeout: float, mode: str) -> AsyncIterator[Client]:
    target = await check_target(url)  # TargetRefused: no connection was opened
    async with _http_client(target, headers, timeout) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=timeout,
                          cache=None) as client:
            yield client


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
    """One tools/call on the upstream. Raises TargetRefused, MCPError, httpx2 errors."""
    async with _connected(url, headers, timeout, call_mode(protocol_version)) as client:
        # session.send_request, not Client.call_tool: the latter re-lists the upstream's tools to
        # check structuredContent, a second round trip per call; toolcore checks the result
        # against the output schema it synced (tool_call) instead.
        return await client.session.send_request(
            types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments)),
            types.CallToolResult,
        )
