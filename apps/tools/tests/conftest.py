"""Fixtures of the toolcore tests: real HTTP targets on 127.0.0.1 and tool factories."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


_TEST_STARTED = [0.0]


@pytest.fixture(autouse=True)
def _audit_in_foreground(settings) -> None:
    # This process flushes its audit queue by hand (audit_flush), on a queue of its own that
    # no server subprocess drains, so no row lands after the test's tables are emptied.
    settings.TOOLS_AUDIT_FLUSH_INTERVAL = 0
    settings.TOOLS_AUDIT_QUEUE = "audit-inprocess-tests"
    _TEST_STARTED[0] = time.time()


class _TargetHandler(BaseHTTPRequestHandler):
    """Routes of the fake tool target; each path is one behaviour under test."""

    protocol_version = "HTTP/1.1"
    received: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._route(None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        payload = json.loads(raw) if raw else None
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": payload})
        self._route(payload)

    def _route(self, payload: Any) -> None:
        path = self.path
        if path == "/echo":
            self._send(200, json.dumps({"echo": payload}).encode())
        elif path == "/projects":
            self._send(200, json.dumps([{"id": "p1", "name": "One"}]).encode())
        elif path.startswith("/slow"):
            time.sleep(float(path.split("/")[-1]) if path.count("/") > 1 else 3)
            self._send(200, b"{}")
        elif path == "/huge":
            self._send(200, b"[" + b"1," * 600_000 + b"1]")
        elif path == "/huge-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"[" + b"1," * 50_000
            for _ in range(30):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif path in ("/leak", "/leak-ok"):
            # A careless target repeating the headers it was sent, in an error or a result.
            echoed = json.dumps(dict(self.headers))
            if path == "/leak":
                self._send(401, f"unauthorized; you sent {echoed}".encode(), "text/plain")
            else:
                self._send(200, json.dumps({"you_sent": json.loads(echoed)}).encode())
        elif path == "/wrong-shape":
            self._send(200, json.dumps({"not": "a list"}).encode())
        elif path == "/not-json":
            self._send(200, b"<html>hello</html>", "text/html")
        elif path == "/empty":
            self._send(204, b"")
        elif path == "/fail":
            self._send(503, b"database is down for maintenance", "text/plain")
        elif path == "/fail-json":
            self._send(400, json.dumps({"error": "bad microdao"}).encode())
        elif path.startswith("/redirect?to="):
            self._send(307, b"", headers={"Location": path.split("=", 1)[1]})
        elif path.startswith("/redirect303?to="):
            self._send(303, b"", headers={"Location": path.split("=", 1)[1]})
        elif path == "/loop":
            self._send(307, b"", headers={"Location": "/loop"})
        else:
            self._send(404, b"no such route", "text/plain")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the executor hangs up on slow and huge answers by design


@pytest.fixture(scope="session")
def http_target() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (threads), base URL without a trailing slash."""
    server = _QuietServer(("127.0.0.1", 0), _TargetHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def target_requests() -> list[dict[str, Any]]:
    _TargetHandler.received.clear()
    return _TargetHandler.received


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def allow_local(settings) -> None:
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]


OBJECT_SCHEMA = {
    "type": "object",
    "properties": {"microdao_id": {"type": "string"}},
    "required": ["microdao_id"],
}


@pytest.fixture
def make_tool(db, make_agents) -> Callable[..., Any]:
    """make_tool(tool_id, **fields) creates a tool (and blueprints of the agents it allows)."""
    from apps.tools.services import tool_create

    def _make(tool_id: str = "demo.echo", **fields: Any) -> Any:
        allowed = fields.get("allowed_agents")
        if isinstance(allowed, list):
            make_agents(*{a.strip() for a in allowed if isinstance(a, str) and a.strip()})
        fields.setdefault("name", tool_id)
        fields.setdefault("input_schema", OBJECT_SCHEMA)
        fields.setdefault("executor", "http")
        fields.setdefault("target", "http://127.0.0.1:9/echo")
        fields.setdefault("timeout", 2.0)
        return tool_create(tool_id=tool_id, **fields)

    return _make


_LOOP = None


def run(coro: Any) -> Any:
    """Runs a coroutine on one long-lived loop (per-loop clients stay valid across tests)."""
    import asyncio

    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def call(tool_id: str, agent_id: str = "agent:sofia", args: dict | None = None, **kwargs: Any) -> Any:
    from apps.tools.services import tool_call

    return run(
        tool_call(
            tool_id=tool_id,
            agent_id=agent_id,
            microdao_id=kwargs.pop("microdao_id", "microdao:7"),
            args={"microdao_id": "microdao:7"} if args is None else args,
            **kwargs,
        )
    )


def flushed_calls() -> list[Any]:
    from apps.tools.audit import audit_flush
    from apps.tools.models import ToolCall

    from datetime import UTC, datetime

    audit_flush()
    # Rows of earlier tests that another process flushed late are older than this test.
    since = datetime.fromtimestamp(_TEST_STARTED[0], tz=UTC)
    return list(ToolCall.objects.filter(created_at__gte=since).order_by("id"))


@pytest.fixture(scope="session")
def tools_server(server_env, tmp_path_factory) -> Iterator[Any]:
    """The app under uvicorn with HTTP tools allowed to reach 127.0.0.1 (the test targets),
    and a worker of its own for its agent runs (their tool calls run there, with the same
    allowed host)."""
    from devtools.testing import start_asgi_server, start_celery_worker

    env = {
        **server_env,
        "DATABASE_POOL": "1",
        "TOOLS_HTTP_ALLOWED_HOSTS": "127.0.0.1",
        "TOOLS_AUDIT_FLUSH_INTERVAL": "0.1",
        "TOOLS_AUDIT_QUEUE": "audit-tools-server",
        # Small pages, so the MCP tests page through tools/list.
        "TOOLS_MCP_PAGE_SIZE": "2",
        # The syncs it queues go to the worker of test_mcp_upstream.py, which may reach 127.0.0.1.
        "TOOLS_MCP_SYNC_QUEUE": "mcp-sync-tests",
        "DAARION_AGENTS_RUN_QUEUE": "agents-tools",
    }
    logs = tmp_path_factory.mktemp("tools-asgi")
    runs = start_celery_worker(env, logs, queues="agents-tools", pool="threads", concurrency=4, name="agents-tools")
    server = start_asgi_server(env, logs, name="tools-web")
    yield server
    server.stop()
    runs.stop()


@pytest.fixture
def tools_api(tools_server, transactional_db) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=tools_server.url, timeout=30) as client:
        yield client
    # The server's audit flusher must finish before the tables are truncated, or its rows
    # would land in the next test.
    from daarion.infra.redis_client import get_redis, key

    redis = get_redis()
    queue, lock = key("tools", "audit-tools-server"), key("tools", "audit-tools-server-lock")
    wait_for(lambda: redis.llen(queue) == 0 and not redis.exists(lock), message="audit queue drained")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def wait_until_served(api: Any, token: str, tool_ids: set[str]) -> None:
    """Waits until the server's registry snapshot lists exactly `tool_ids` (enabled ones)."""
    headers = {"Authorization": f"Bearer {token}"}
    wait_for(
        lambda: {t["id"] for t in api.get("/internal/tools", headers=headers).json()["tools"]} == tool_ids,
        message=f"the server to serve {sorted(tool_ids)}",
    )
