"""Sync and async clients of the DAARION control plane (`/internal/...`), over httpx.

    with DaarionClient("http://localhost:8000", token="dst_...") as client:
        client.agent_chat("agent:sofia", message="Which projects do we have?")
        for chunk in client.agent_chat_stream("agent:sofia", message="hi"):
            ...

Every error answer raises DaarionAPIError with the service's envelope. Both clients build
their requests from the same `_ops` functions, so they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from daarion_client import types as t
from daarion_client.errors import DaarionAPIError
from daarion_client.sse import aiter_events, iter_events

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


@dataclass(frozen=True)
class _Op:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _agent(agent_id: str) -> str:
    return "/internal/agents/" + quote(agent_id, safe=":")


class _ops:
    """Request builders, one per operation."""

    @staticmethod
    def llm_proxy(
        model: str,
        messages: list[dict[str, Any]],
        *,
        agent_id: str | None = None,
        microdao_id: str | None = None,
        channel_id: str | None = None,
        **options: Any,
    ) -> _Op:
        metadata = _drop_none({"agent_id": agent_id, "microdao_id": microdao_id, "channel_id": channel_id})
        return _Op(
            "POST",
            "/internal/llm/proxy",
            json={"model": model, "messages": messages, "metadata": metadata, **_drop_none(options)},
        )

    @staticmethod
    def llm_stream(*args: Any, **kwargs: Any) -> _Op:
        op = _ops.llm_proxy(*args, **kwargs)
        return _Op("POST", "/internal/llm/stream", json=op.json)

    @staticmethod
    def memory_store(
        *,
        agent_id: str,
        microdao_id: str,
        kind: str,
        content: dict[str, Any],
        channel_id: str | None = None,
        meta: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> _Op:
        return _Op(
            "POST",
            "/internal/agent-memory/store",
            json=_drop_none(
                {
                    "agent_id": agent_id,
                    "microdao_id": microdao_id,
                    "channel_id": channel_id,
                    "kind": kind,
                    "content": content,
                    "meta": meta,
                    "idempotency_key": idempotency_key,
                }
            ),
        )

    @staticmethod
    def memory_query(
        *,
        agent_id: str,
        query: str,
        microdao_id: str | None = None,
        channel_id: str | None = None,
        limit: int = 5,
        kinds: list[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        meta: dict[str, Any] | None = None,
        min_score: float | None = None,
        lang: str | None = None,
    ) -> _Op:
        return _Op(
            "POST",
            "/internal/agent-memory/query",
            json=_drop_none(
                {
                    "agent_id": agent_id,
                    "microdao_id": microdao_id,
                    "channel_id": channel_id,
                    "query": query,
                    "limit": limit,
                    "kinds": kinds,
                    "since": since,
                    "until": until,
                    "meta": meta,
                    "min_score": min_score,
                    "lang": lang,
                }
            ),
        )

    @staticmethod
    def memory_list(
        *,
        agent_id: str,
        kinds: list[str] | None = None,
        channel_id: str | None = None,
        microdao_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        meta: dict[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> _Op:
        params: dict[str, Any] = _drop_none(
            {
                "agent_id": agent_id,
                "channel_id": channel_id,
                "microdao_id": microdao_id,
                "since": since,
                "until": until,
                "limit": limit,
                "cursor": cursor,
                "kind": ",".join(kinds) if kinds else None,
            }
        )
        for key, value in (meta or {}).items():
            params[f"meta.{key}"] = value if isinstance(value, str) else json.dumps(value)
        return _Op("GET", "/internal/agent-memory/", params=params)

    @staticmethod
    def memory_get(memory_id: str) -> _Op:
        return _Op("GET", f"/internal/agent-memory/{quote(memory_id, safe='')}")

    @staticmethod
    def memory_update(
        memory_id: str,
        *,
        content: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        lang: str | None = None,
        expected_version: int | None = None,
    ) -> _Op:
        return _Op(
            "PATCH",
            f"/internal/agent-memory/{quote(memory_id, safe='')}",
            json=_drop_none(
                {
                    "content": content,
                    "meta": meta,
                    "lang": lang,
                    "expected_version": expected_version,
                }
            ),
        )

    @staticmethod
    def memory_history(memory_id: str) -> _Op:
        return _Op("GET", f"/internal/agent-memory/{quote(memory_id, safe='')}/history")

    @staticmethod
    def memory_delete(memory_id: str) -> _Op:
        return _Op("DELETE", f"/internal/agent-memory/{quote(memory_id, safe='')}")

    @staticmethod
    def memory_summarize(
        *,
        agent_id: str,
        microdao_id: str,
        channel_id: str | None = None,
        model: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> _Op:
        return _Op(
            "POST",
            "/internal/agent-memory/summarize",
            json=_drop_none(
                {
                    "agent_id": agent_id,
                    "microdao_id": microdao_id,
                    "channel_id": channel_id,
                    "model": model,
                    "wait": wait,
                    "timeout": timeout,
                }
            ),
        )

    @staticmethod
    def memory_job(job_id: str) -> _Op:
        return _Op("GET", f"/internal/agent-memory/jobs/{quote(job_id, safe='')}")

    @staticmethod
    def tools_list(*, agent_id: str | None = None, format: str | None = None) -> _Op:
        return _Op("GET", "/internal/tools", params=_drop_none({"agent_id": agent_id, "format": format}))

    @staticmethod
    def tool_call(
        *, tool_id: str, agent_id: str, microdao_id: str, args: dict[str, Any], context: dict[str, Any] | None = None
    ) -> _Op:
        return _Op(
            "POST",
            "/internal/tools/call",
            json=_drop_none(
                {
                    "tool_id": tool_id,
                    "agent_id": agent_id,
                    "microdao_id": microdao_id,
                    "args": args,
                    "context": context,
                }
            ),
        )

    @staticmethod
    def agents_list() -> _Op:
        return _Op("GET", "/internal/agents")

    @staticmethod
    def agent_get(agent_id: str) -> _Op:
        return _Op("GET", _agent(agent_id))

    @staticmethod
    def agent_load(agent_id: str) -> _Op:
        return _Op("POST", _agent(agent_id) + "/load")

    @staticmethod
    def agent_unload(agent_id: str) -> _Op:
        return _Op("POST", _agent(agent_id) + "/unload")

    @staticmethod
    def agent_secrets(agent_id: str) -> _Op:
        return _Op("GET", _agent(agent_id) + "/secrets")

    @staticmethod
    def agent_chat(
        agent_id: str,
        *,
        message: str,
        microdao_id: str | None = None,
        channel_id: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        context: list[t.ContextMessage] | None = None,
        stream: bool = False,
        strategy: str | None = None,
        idempotency_key: str | None = None,
        path: str = "/chat",
    ) -> _Op:
        return _Op(
            "POST",
            _agent(agent_id) + path,
            json=_drop_none(
                {
                    "message": message,
                    "microdao_id": microdao_id,
                    "channel_id": channel_id,
                    "session_id": session_id,
                    "user_id": user_id,
                    "context": context,
                    "stream": stream or None,
                    "strategy": strategy,
                }
            ),
            headers=_drop_none({"Idempotency-Key": idempotency_key}),
        )

    @staticmethod
    def run_start(agent_id: str, *, message: str, **kwargs: Any) -> _Op:
        return _ops.agent_chat(agent_id, message=message, path="/runs", **kwargs)

    @staticmethod
    def run_get(run_id: str) -> _Op:
        return _Op("GET", f"/internal/agents/runs/{quote(run_id, safe='')}")

    @staticmethod
    def run_stream(run_id: str, *, after: str | None = None) -> _Op:
        return _Op("GET", f"/internal/agents/runs/{quote(run_id, safe='')}/stream", headers=_drop_none({"Last-Event-ID": after}))

    @staticmethod
    def run_cancel(run_id: str) -> _Op:
        return _Op("POST", f"/internal/agents/runs/{quote(run_id, safe='')}/cancel")

    @staticmethod
    def runs_list(
        agent_id: str,
        *,
        session_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> _Op:
        return _Op(
            "GET",
            _agent(agent_id) + "/runs",
            params=_drop_none({"session_id": session_id, "status": status, "limit": limit, "cursor": cursor}),
        )


def _headers(token: str, extra: dict[str, str] | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json", **(extra or {})}


def _json_or_raise(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise DaarionAPIError.from_response(response.status_code, response.content, response.headers.get("x-request-id"))
    return response.json()


class DaarionClient:
    """Blocking client. Use as a context manager, or call close()."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=_headers(token, headers), timeout=timeout, transport=transport
        )

    def __enter__(self) -> "DaarionClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, op: _Op) -> Any:
        try:
            response = self._http.request(op.method, op.path, json=op.json, params=op.params or None, headers=op.headers or None)
        except httpx.HTTPError as exc:
            raise DaarionAPIError(0, "transport_error", f"{type(exc).__name__}: {exc}") from exc
        return _json_or_raise(response)

    def _events(self, op: _Op, raise_on_error: bool) -> Iterator[tuple[str | None, dict[str, Any]]]:
        try:
            with self._http.stream(
                op.method, op.path, json=op.json, headers={**op.headers, "Accept": "text/event-stream"}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise DaarionAPIError.from_response(
                        response.status_code, response.content, response.headers.get("x-request-id")
                    )
                yield from iter_events(response.iter_lines(), raise_on_error=raise_on_error)
        except httpx.HTTPError as exc:
            raise DaarionAPIError(0, "transport_error", f"{type(exc).__name__}: {exc}") from exc

    def _stream(self, op: _Op, raise_on_error: bool) -> Iterator[dict[str, Any]]:
        return (chunk for _, chunk in self._events(op, raise_on_error))

    # LLM proxy
    def llm_proxy(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> t.ProxyResult:
        return self._run(_ops.llm_proxy(model, messages, **kwargs))

    def llm_stream(
        self, model: str, messages: list[dict[str, Any]], *, raise_on_error: bool = True, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """The UI message stream chunks of /internal/llm/stream (an `error` chunk raises)."""
        return self._stream(_ops.llm_stream(model, messages, **kwargs), raise_on_error)

    # memory
    def memory_store(self, **kwargs: Any) -> t.StoreResult:
        return self._run(_ops.memory_store(**kwargs))

    def memory_query(self, **kwargs: Any) -> t.QueryResult:
        return self._run(_ops.memory_query(**kwargs))

    def memory_list(self, **kwargs: Any) -> t.MemoryList:
        """One page of an agent's memories (`next_cursor` fetches the next)."""
        return self._run(_ops.memory_list(**kwargs))

    def memory_iter(self, **kwargs: Any) -> Iterator[t.MemoryEntry]:
        """Every memory matching the filters, page by page."""
        cursor = None
        while True:
            page = self._run(_ops.memory_list(**kwargs, cursor=cursor))
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def memory_get(self, memory_id: str) -> t.MemoryEntry:
        return self._run(_ops.memory_get(memory_id))

    def memory_update(self, memory_id: str, **kwargs: Any) -> t.MemoryEntry:
        return self._run(_ops.memory_update(memory_id, **kwargs))

    def memory_history(self, memory_id: str) -> t.MemoryHistory:
        return self._run(_ops.memory_history(memory_id))

    def memory_delete(self, memory_id: str) -> dict[str, Any]:
        return self._run(_ops.memory_delete(memory_id))

    def memory_summarize(self, **kwargs: Any) -> t.Job:
        return self._run(_ops.memory_summarize(**kwargs))

    def memory_job(self, job_id: str) -> t.Job:
        return self._run(_ops.memory_job(job_id))

    # tools
    def tools_list(self, **kwargs: Any) -> dict[str, Any]:
        return self._run(_ops.tools_list(**kwargs))

    def tool_call(self, **kwargs: Any) -> t.ToolCallResult:
        return self._run(_ops.tool_call(**kwargs))

    # agents
    def agents_list(self) -> t.AgentList:
        return self._run(_ops.agents_list())

    def agent_get(self, agent_id: str) -> t.Blueprint:
        return self._run(_ops.agent_get(agent_id))

    def agent_load(self, agent_id: str) -> t.AgentState:
        return self._run(_ops.agent_load(agent_id))

    def agent_unload(self, agent_id: str) -> t.AgentState:
        return self._run(_ops.agent_unload(agent_id))

    def agent_secrets(self, agent_id: str) -> dict[str, Any]:
        return self._run(_ops.agent_secrets(agent_id))

    def agent_chat(self, agent_id: str, *, message: str, **kwargs: Any) -> t.ChatResult:
        return self._run(_ops.agent_chat(agent_id, message=message, **kwargs))

    def agent_chat_stream(
        self, agent_id: str, *, message: str, raise_on_error: bool = True, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """The turn's UI message stream chunks (`start` ... `finish`); an `error` chunk raises."""
        return self._stream(_ops.agent_chat(agent_id, message=message, stream=True, **kwargs), raise_on_error)

    # runs
    def run_start(self, agent_id: str, *, message: str, **kwargs: Any) -> t.Run:
        """Starts a background run (202) and returns it; the same Idempotency-Key returns the same run."""
        return self._run(_ops.run_start(agent_id, message=message, **kwargs))

    def run_get(self, run_id: str) -> t.Run:
        return self._run(_ops.run_get(run_id))

    def run_stream(
        self, run_id: str, *, after: str | None = None, raise_on_error: bool = True
    ) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(event id, chunk) pairs of the run from its start, or after the event id `after`."""
        return self._events(_ops.run_stream(run_id, after=after), raise_on_error)

    def run_cancel(self, run_id: str) -> t.Run:
        return self._run(_ops.run_cancel(run_id))

    def runs_list(self, agent_id: str, **kwargs: Any) -> t.RunList:
        return self._run(_ops.runs_list(agent_id, **kwargs))


class AsyncDaarionClient:
    """The same operations for asyncio code."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=_headers(token, headers), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> "AsyncDaarionClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: _Op) -> Any:
        try:
            response = await self._http.request(
                op.method, op.path, json=op.json, params=op.params or None, headers=op.headers or None
            )
        except httpx.HTTPError as exc:
            raise DaarionAPIError(0, "transport_error", f"{type(exc).__name__}: {exc}") from exc
        return _json_or_raise(response)

    async def _events(self, op: _Op, raise_on_error: bool) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
        try:
            async with self._http.stream(
                op.method, op.path, json=op.json, headers={**op.headers, "Accept": "text/event-stream"}
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise DaarionAPIError.from_response(
                        response.status_code, response.content, response.headers.get("x-request-id")
                    )
                async for event in aiter_events(response.aiter_lines(), raise_on_error=raise_on_error):
                    yield event
        except httpx.HTTPError as exc:
            raise DaarionAPIError(0, "transport_error", f"{type(exc).__name__}: {exc}") from exc

    async def _stream(self, op: _Op, raise_on_error: bool) -> AsyncIterator[dict[str, Any]]:
        async for _, chunk in self._events(op, raise_on_error):
            yield chunk

    async def llm_proxy(self, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> t.ProxyResult:
        return await self._run(_ops.llm_proxy(model, messages, **kwargs))

    def llm_stream(
        self, model: str, messages: list[dict[str, Any]], *, raise_on_error: bool = True, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        return self._stream(_ops.llm_stream(model, messages, **kwargs), raise_on_error)

    async def memory_store(self, **kwargs: Any) -> t.StoreResult:
        return await self._run(_ops.memory_store(**kwargs))

    async def memory_query(self, **kwargs: Any) -> t.QueryResult:
        return await self._run(_ops.memory_query(**kwargs))

    async def memory_list(self, **kwargs: Any) -> t.MemoryList:
        return await self._run(_ops.memory_list(**kwargs))

    async def memory_iter(self, **kwargs: Any) -> AsyncIterator[t.MemoryEntry]:
        cursor = None
        while True:
            page = await self._run(_ops.memory_list(**kwargs, cursor=cursor))
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def memory_get(self, memory_id: str) -> t.MemoryEntry:
        return await self._run(_ops.memory_get(memory_id))

    async def memory_update(self, memory_id: str, **kwargs: Any) -> t.MemoryEntry:
        return await self._run(_ops.memory_update(memory_id, **kwargs))

    async def memory_history(self, memory_id: str) -> t.MemoryHistory:
        return await self._run(_ops.memory_history(memory_id))

    async def memory_delete(self, memory_id: str) -> dict[str, Any]:
        return await self._run(_ops.memory_delete(memory_id))

    async def memory_summarize(self, **kwargs: Any) -> t.Job:
        return await self._run(_ops.memory_summarize(**kwargs))

    async def memory_job(self, job_id: str) -> t.Job:
        return await self._run(_ops.memory_job(job_id))

    async def tools_list(self, **kwargs: Any) -> dict[str, Any]:
        return await self._run(_ops.tools_list(**kwargs))

    async def tool_call(self, **kwargs: Any) -> t.ToolCallResult:
        return await self._run(_ops.tool_call(**kwargs))

    async def agents_list(self) -> t.AgentList:
        return await self._run(_ops.agents_list())

    async def agent_get(self, agent_id: str) -> t.Blueprint:
        return await self._run(_ops.agent_get(agent_id))

    async def agent_load(self, agent_id: str) -> t.AgentState:
        return await self._run(_ops.agent_load(agent_id))

    async def agent_unload(self, agent_id: str) -> t.AgentState:
        return await self._run(_ops.agent_unload(agent_id))

    async def agent_secrets(self, agent_id: str) -> dict[str, Any]:
        return await self._run(_ops.agent_secrets(agent_id))

    async def agent_chat(self, agent_id: str, *, message: str, **kwargs: Any) -> t.ChatResult:
        return await self._run(_ops.agent_chat(agent_id, message=message, **kwargs))

    def agent_chat_stream(
        self, agent_id: str, *, message: str, raise_on_error: bool = True, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        return self._stream(_ops.agent_chat(agent_id, message=message, stream=True, **kwargs), raise_on_error)

    async def run_start(self, agent_id: str, *, message: str, **kwargs: Any) -> t.Run:
        return await self._run(_ops.run_start(agent_id, message=message, **kwargs))

    async def run_get(self, run_id: str) -> t.Run:
        return await self._run(_ops.run_get(run_id))

    def run_stream(
        self, run_id: str, *, after: str | None = None, raise_on_error: bool = True
    ) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
        return self._events(_ops.run_stream(run_id, after=after), raise_on_error)

    async def run_cancel(self, run_id: str) -> t.Run:
        return await self._run(_ops.run_cancel(run_id))

    async def runs_list(self, agent_id: str, **kwargs: Any) -> t.RunList:
        return await self._run(_ops.runs_list(agent_id, **kwargs))
