"""The HTTP transport of the provider clients: one pooled aiohttp session per provider row and
event loop, JSON POSTs and streamed POSTs, transport failures classified as ProviderError.

Why aiohttp and not httpx: on the proxy's hot path the upstream call was the largest single
cost, and httpx (pure-Python HTTP/1.1 on anyio) spent about 0.74 ms of CPU per POST against
aiohttp's 0.15 ms (C parser, no anyio layer) — measured in docs/BENCHMARKS.md. Provider
modules see only this module's small surface, so swapping the client again is one file.

Timeouts follow what the provider row's `timeout` has always meant: the longest silence
allowed while connecting (capped at 10 s) and between two reads of the answer, not a cap on
the whole answer (a long stream that keeps sending is fine).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from apps.llm.providers.errors import ProviderError

# An SSE line (one stream chunk) larger than this is refused as malformed instead of being
# buffered without bound.
MAX_LINE_BYTES = 4 * 1024 * 1024
# Non-streamed answers (and error bodies) larger than this are refused.
MAX_BODY_BYTES = 64 * 1024 * 1024


# Closing retired pools in the background; the loop keeps only weak references to tasks.
_closing: set[asyncio.Task] = set()


def _in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


@dataclass
class RawResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes

    def json(self) -> Any:
        """The body as JSON (orjson: strict RFC 8259, like the project's request parser)."""
        return orjson.loads(self.body)


def transport_error(exc: BaseException, timeout: float) -> ProviderError:
    """A failure below HTTP (no status): a timeout or a connection problem, both retryable."""
    if isinstance(exc, TimeoutError):  # aiohttp.ServerTimeoutError is one too
        return ProviderError("timeout", f"no answer within {timeout:g} s")
    detail = str(exc) or type(exc).__name__
    return ProviderError("connection", f"{type(exc).__name__}: {detail}"[:300])


class Transport:
    """Pooled HTTP to one provider's base URL. Create and use it inside one event loop."""

    def __init__(self, *, base_url: str, headers: Mapping[str, str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._in_flight = 0
        self._retired = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout, 10.0), sock_read=self.timeout),
                connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30, ttl_dns_cache=300),
                trust_env=False,  # no proxy from the environment between us and a local model
                read_bufsize=256 * 1024,
                max_line_size=MAX_LINE_BYTES,
            )
        return self._session

    def url(self, path: str) -> URL:
        """`base_url + path`, parsed once per path (yarl parsing is a visible cost per call)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base_url + path)
        return url

    async def post_json(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> RawResponse:
        """POSTs `body` as JSON and reads the whole answer, whatever its status."""
        self._in_flight += 1
        try:
            async with self.session.post(self.url(path), data=orjson.dumps(body), headers=_json_headers(headers)) as response:
                return RawResponse(response.status, response.headers, await _read_capped(response))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, self.timeout) from exc
        finally:
            self._call_ended()

    @asynccontextmanager
    async def stream(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> AsyncIterator[StreamedResponse]:
        """POSTs `body` and yields the response for line-by-line reading. Leaving the block
        before the answer ended (the caller went away) closes the connection, so the
        upstream sees the disconnect and stops generating."""
        self._in_flight += 1
        try:
            async with self.session.post(self.url(path), data=orjson.dumps(body), headers=_json_headers(headers)) as response:
                try:
                    yield StreamedResponse(response)
                finally:
                    if not response.content.at_eof():
                        response.close()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, self.timeout) from exc
        finally:
            self._call_ended()

    def _call_ended(self) -> None:
        self._in_flight -= 1
        if self._retired and not self._in_flight:
            _in_background(self._close_session())

    def retire(self) -> None:
        """The pool closes once the calls in flight on it have finished, so a provider row
        edited under load (a new pool for the new settings) drops no call."""
        self._retired = True
        if not self._in_flight:
            _in_background(self._close_session())

    async def _close_session(self) -> None:
        if self._session is not None and not self._session.closed and not self._in_flight:
            await self._session.close()


class StreamedResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self._response = response

    async def read(self) -> RawResponse:
        """The rest of the body at once (for an error answer)."""
        return RawResponse(self.status, self.headers, await _read_capped(self._response))

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines, decoded, without their line ends."""
        content = self._response.content
        while True:
            try:
                line = await content.readline()
            except ValueError as exc:  # aiohttp: a line over max_line_size
                raise ProviderError("malformed", f"upstream sent a stream line over {MAX_LINE_BYTES} bytes") from exc
            if not line:
                return
            yield line.decode("utf-8", "replace").rstrip("\r\n")


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, refused beyond MAX_BODY_BYTES: a misbehaving upstream must not make
    the proxy hold gigabytes in memory."""
    length = response.content_length
    if length is not None and length <= MAX_BODY_BYTES:
        return await response.read()  # the common case: one call, no copying
    if length is not None:
        raise ProviderError("malformed", f"upstream answer is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    while chunk := await response.content.read(256 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProviderError("malformed", f"upstream answer is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_JSON = {"Content-Type": "application/json"}


def _json_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    return {**_JSON, **headers} if headers else _JSON


def upstream_message(response: RawResponse) -> str:
    """The upstream's own error message, when it sent one in a known shape."""
    try:
        body = response.json()
    except orjson.JSONDecodeError:
        return response.body[:500].decode("utf-8", "replace") or f"HTTP {response.status}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return str(body)[:500]
