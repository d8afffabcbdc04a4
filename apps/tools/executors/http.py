"""The http executor: POSTs {"args", "context"} to the tool's URL, safely.

SSRF guard, applied to the first URL and to every redirect hop:
- the host must match TOOLS_HTTP_ALLOWED_HOSTS (`host`, `host:port`, `*.suffix`, `*`);
- the host is resolved here and every address checked: loopback, private, link-local and
  other non-global addresses pass only for a host listed exactly (not through a wildcard);
  cloud metadata addresses pass only when that IP itself is listed;
- the connection goes to the checked IP: the client's network backend connects only to the
  address approved for that host in this request, so a second DNS answer cannot swap in
  another address (DNS rebinding). The URL keeps the name, so the Host header, TLS SNI,
  certificate checks and connection pooling stay per host name.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import json
import socket
import ssl
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from django.conf import settings

from apps.tools.choices import CallStatus, Executor
from apps.tools.executors import ExecutionResult, ToolContext, executor

_METADATA_IPS = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
}
_REDIRECT_CODES = {301, 302, 303, 307, 308}
_SHORT_BODY = 300


class TargetRefused(Exception):
    """The SSRF guard refused a URL; the message says which rule."""


@dataclass(frozen=True)
class AllowRule:
    host: str  # lower-case; "*" or "*.suffix" for wildcards
    port: int | None

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*")

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def parse_rule(entry: str) -> AllowRule:
    entry = entry.strip().lower()
    if entry.startswith("["):  # [::1]:8000
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    return AllowRule(host=host, port=int(port) if port else None)


def allow_rules() -> list[AllowRule]:
    return [parse_rule(e) for e in settings.TOOLS_HTTP_ALLOWED_HOSTS if e.strip()]


def _rule_for(host: str, port: int) -> AllowRule | None:
    rules = [r for r in allow_rules() if r.matches(host, port)]
    # An exact entry is the stronger grant (it may reach internal addresses); prefer it.
    rules.sort(key=lambda r: r.wildcard)
    return rules[0] if rules else None


def _is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _metadata(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in _METADATA_IPS


@dataclass(frozen=True)
class CheckedTarget:
    url: httpx.URL  # the URL as given
    ip: str  # the address we connect to
    host: str
    port: int


async def check_target(url: str) -> CheckedTarget:
    """Resolves and checks `url`; raises TargetRefused with the reason."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetRefused(f"invalid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused(f"scheme {parsed.scheme!r} is not allowed (http or https only)")
    # The IDNA (ASCII) form: what the client will connect to and what the pin is keyed by.
    host = parsed.raw_host.decode("ascii").rstrip(".").lower()
    if not host:
        raise TargetRefused("the URL has no host")
    if parsed.userinfo:
        raise TargetRefused("URLs with credentials are not allowed; use the tool's secret headers")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    rule = _rule_for(host, port)
    if rule is None:
        raise TargetRefused(f"host {host}:{port} is not in TOOLS_HTTP_ALLOWED_HOSTS")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TargetRefused(f"could not resolve host {host!r}: {exc.strerror or exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"host {host!r} resolved to no address")
    for ip in addresses:
        # A host with several addresses must be safe at all of them: the connection could use any.
        if _metadata(ip) and not (rule.host == str(ip) and not rule.wildcard):
            raise TargetRefused(f"host {host} resolves to metadata address {ip}, which is never allowed unless listed by IP")
        if _is_internal(ip) and rule.wildcard:
            raise TargetRefused(
                f"host {host} resolves to internal address {ip}; internal addresses need the host listed "
                "exactly in TOOLS_HTTP_ALLOWED_HOSTS"
            )
    return CheckedTarget(url=parsed, ip=str(addresses[0]), host=host, port=port)


# (host, port) -> the checked IP, for the request being sent in this task.
_pins: contextvars.ContextVar[dict[tuple[str, int], str]] = contextvars.ContextVar("tools_http_pins", default={})


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to the address check_target approved for the host."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        ip = _pins.get().get((host.strip("[]").rstrip(".").lower(), port))
        if ip is None:
            raise httpcore.ConnectError(f"no checked address for {host}:{port}; refusing to connect")
        return await self._inner.connect_tcp(
            ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not tool targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _ssl_context() -> ssl.SSLContext:
    if settings.TOOLS_HTTP_CA_BUNDLE:
        return ssl.create_default_context(cafile=settings.TOOLS_HTTP_CA_BUNDLE)
    return httpx.create_ssl_context()


def _transport() -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx (pinned in requirements.txt) has no public hook for the network backend; its pool
    # is rebuilt here with the same settings and ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(),
        max_connections=200,
        max_keepalive_connections=50,
        keepalive_expiry=30,
        network_backend=PinnedBackend(),
    )
    return transport


# Keyed by the loop object itself (weakly): an id() of a closed loop can be reused by a new one.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop (an AsyncClient cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            follow_redirects=False,  # every hop goes through check_target
            trust_env=False,  # an environment proxy would connect by name, past the IP check
            transport=_transport(),
        )
        _clients[loop] = client
    return client


def _short(body: bytes) -> str:
    text = body[:_SHORT_BODY].decode("utf-8", "replace").strip()
    return text + ("…" if len(body) > _SHORT_BODY else "")


async def _read_capped(response: httpx.Response, cap: int) -> bytes | None:
    """The body, or None once it passes `cap` bytes (the rest is never read)."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


async def _send(
    tool: Any, body: bytes, headers: dict[str, str], secret_headers: dict[str, str], timeout: httpx.Timeout
) -> tuple[httpx.Response, bytes | None, CheckedTarget]:
    content: bytes | None
    url, method, content = tool.target, "POST", body
    origin = _origin(url)
    for _ in range(settings.TOOLS_HTTP_MAX_REDIRECTS + 1):
        target = await check_target(url)
        # Secrets go only to the origin the tool names: a redirect elsewhere (even to an
        # allowed host) gets the request without them, as browsers and curl do.
        request_headers = {**(secret_headers if _origin(url) == origin else {}), **headers}
        if method == "GET":
            request_headers.pop("Content-Type", None)
        request = _client().build_request(
            method, target.url, content=content if method == "POST" else None, headers=request_headers, timeout=timeout
        )
        pin = _pins.set({**_pins.get(), (target.host, target.port): target.ip})
        try:
            response = await _client().send(request, stream=True)
        finally:
            _pins.reset(pin)
        try:
            if response.status_code in _REDIRECT_CODES and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                if response.status_code in (301, 302, 303):
                    method, content = "GET", None
                continue
            return response, await _read_capped(response, settings.TOOLS_HTTP_MAX_RESPONSE_BYTES), target
        finally:
            await response.aclose()
    raise TargetRefused(f"more than {settings.TOOLS_HTTP_MAX_REDIRECTS} redirects")


@executor(Executor.HTTP)
async def run_http(tool: Any, args: dict, context: ToolContext) -> ExecutionResult:
    body = json.dumps({"args": args, "context": context.as_dict()}, separators=(",", ":")).encode()
    secret_headers = {**tool.secret_headers, **context.secret_headers}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Request-Id": context.request_id,
        "User-Agent": "daarion-toolcore/1",
    }
    # The connect phase gets a share of the budget so "cannot connect" is told apart from
    # "connected but too slow" even when both would hit the deadline.
    timeout = httpx.Timeout(tool.timeout, connect=max(min(tool.timeout * 0.8, 5.0), 0.05))
    where = urlsplit(tool.target).netloc
    try:
        async with asyncio.timeout(tool.timeout):
            response, raw, target = await _send(tool, body, headers, secret_headers, timeout)
    except TargetRefused as exc:
        return ExecutionResult.failure(f"target refused by the SSRF guard: {exc}", "target_not_allowed")
    except httpx.ConnectTimeout:
        return ExecutionResult.failure(
            f"could not connect to {where}: no answer to the connection within {timeout.connect:g} s",
            "connect_timeout",
            status=CallStatus.TIMEOUT,
        )
    except httpx.ConnectError as exc:
        return ExecutionResult.failure(f"could not connect to {where}: {exc or 'connection failed'}", "connect_error")
    except (TimeoutError, httpx.TimeoutException):
        return ExecutionResult.failure(
            f"{where} accepted the connection but did not answer within {tool.timeout:g} s",
            "timeout",
            status=CallStatus.TIMEOUT,
        )
    except httpx.HTTPError as exc:
        return ExecutionResult.failure(
            f"HTTP exchange with {where} failed: {type(exc).__name__}: {exc or 'no detail'}", "connect_error"
        )
    status = response.status_code
    if raw is None:
        limit = settings.TOOLS_HTTP_MAX_RESPONSE_BYTES
        return ExecutionResult.failure(
            f"{where} answered more than {limit} bytes (TOOLS_HTTP_MAX_RESPONSE_BYTES)",
            "response_too_large",
            details={"status": status, "limit_bytes": limit},
        )
    if not 200 <= status < 300:
        return ExecutionResult.failure(
            f"{where} answered HTTP {status}: {_short(raw) or '(empty body)'}",
            "upstream_status",
            details={"status": status, "body": _short(raw)},
        )
    if not raw.strip():
        return ExecutionResult.success(None)
    try:
        return ExecutionResult.success(json.loads(raw))
    except ValueError:
        return ExecutionResult.failure(
            f"{where} answered HTTP {status} with a body that is not JSON: {_short(raw)}",
            "invalid_response",
            details={"status": status, "body": _short(raw)},
        )
