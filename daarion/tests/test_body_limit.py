"""The body limit at the door (daarion/body_limit.py), over a raw socket to the real server: a
body over the limit is refused on its Content-Length before the server reads it, on every door,
and a chunked one is cut off at the limit. The client counts what it managed to send before the
answer came: the server cannot have read more than that.
"""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings

ANNOUNCED = 200 * 1024 * 1024
PIECE = 16 * 1024
DOORS = [
    "/health",
    "/admin/login/",
    "/mcp",
    "/api/registry/apply",
    "/internal/agent-memory/store",
    "/internal/agents/agent:sofia/chat",
    "/internal/llm/proxy",
    "/internal/tools/call",
    "/v1/chat/completions",
    "/v1/messages",
]


def _send_until_answered(
    url: str, path: str, *, chunked: bool, give_up_after: int, extra: str = "", pace: float = 0.0
) -> tuple[int, bytes]:
    """POSTs a body that never ends, piece by piece, until the server answers; returns (bytes
    of body sent, the raw answer). Fails if `give_up_after` bytes went out unanswered. With
    `pace`, each piece waits up to that long for an answer first, so what was sent is not all
    sitting in socket buffers the server never read."""
    parts = urlsplit(url)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {ANNOUNCED}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Content-Type: application/json\r\nx-request-id: req-body-limit\r\n{extra}{framing}\r\n\r\n"
    ).encode()
    piece = b"[" + b" " * (PIECE - 1)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent = 0
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while True:
            readable = select.select([sock], [], [], pace)[0] if pace else []
            writable = []
            if not readable:
                readable, writable, _ = select.select([sock], [sock] if sent < give_up_after else [], [], 30)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
                continue
            if not writable:
                pytest.fail(f"{path}: no answer after {sent} body bytes")
            try:
                sent += sock.send(frame) if not chunked else _send_all(sock, frame)
            except (BrokenPipeError, ConnectionResetError):
                continue  # the server closed after answering: read the answer
    assert answer, f"{path}: the connection closed without an answer after {sent} body bytes"
    return sent, answer


def _send_all(sock: socket.socket, frame: bytes) -> int:
    # A chunk frame must go out whole to keep the framing; the socket is non-blocking, so wait.
    view = memoryview(frame)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            select.select([], [sock], [], 30)
    return len(frame)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _assert_door_shape(path: str, headers: dict[str, str], body: bytes) -> None:
    if path.startswith("/admin/"):
        assert b"over the limit" in body
        return
    data = json.loads(body)
    if path == "/mcp":
        assert data["jsonrpc"] == "2.0" and data["error"]["data"]["type"] == "payload_too_large"
    elif path == "/v1/messages":
        assert data["type"] == "error" and data["error"]["type"] == "request_too_large"
    elif path.startswith("/v1/"):
        assert data["error"]["code"] == "payload_too_large" and "param" in data["error"]
    else:
        assert data["error"]["type"] == "payload_too_large"
        assert data["error"]["details"]["limit_bytes"] == settings.MAX_BODY_BYTES
    assert headers["x-request-id"] == "req-body-limit"


@pytest.mark.parametrize("path", DOORS)
def test_an_announced_200_mb_body_is_refused_before_1_mb_is_read(asgi_server, path) -> None:
    sent, answer = _send_until_answered(asgi_server.url, path, chunked=False, give_up_after=1024 * 1024, pace=1.0)
    status, headers, body = _parse(answer)
    assert status == 413, answer[:500]
    assert sent < 1024 * 1024
    assert headers.get("connection") == "close"  # the rest is never read
    _assert_door_shape(path, headers, body)


@pytest.mark.parametrize("path", DOORS)
def test_a_chunked_body_is_cut_off_at_the_limit(asgi_server, transactional_db, make_token, path) -> None:
    limit = settings.MAX_BODY_BYTES
    # The MCP gateway refuses a request without a token before reading its body at all; with
    # one, the SDK would read the body: the cut-off is what stops it.
    extra = f"Authorization: Bearer {make_token(scopes=['tools'], agents=['agent:sofia'])}\r\n" if path == "/mcp" else ""
    # The body never ends, so only the count can answer it. The kernel's socket buffers on a
    # loopback connection grow to several MiB, all sent but not yet read by the server: the
    # client's count bounds what the server read only that loosely.
    slack = 16 * 1024 * 1024
    sent, answer = _send_until_answered(asgi_server.url, path, chunked=True, give_up_after=limit + slack, extra=extra)
    status, headers, body = _parse(answer)
    assert status == 413, answer[:500]
    assert limit < sent < limit + slack
    _assert_door_shape(path, headers, body)
