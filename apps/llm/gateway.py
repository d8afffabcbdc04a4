"""The in-process gateway other apps (memory, agents) call instead of HTTP: the same
routing, rate limits and usage records as the API, without a network hop.

    result = await chat_completion(model="dagi-stub", messages=[...], agent_id="agent:sofia")
    result.content, result.tool_calls, result.usage

`credentials={"openai": "sk-..."}` (provider name -> API key) replaces those providers'
keys for this one call; `credentials_from_secrets(agent secrets)` builds it from an agent's
secrets named `<PROVIDER>_API_KEY` (`provider_secret_name`).

Errors are the project's `daarion.infra.errors` (NotFound for an unknown model, RateLimited,
UpstreamError / GatewayTimeout / ServiceUnavailable when every deployment failed, ...).
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from apps.llm import router
from apps.llm.choices import Endpoint
from apps.llm.providers import StreamEvent, ToolCall
from apps.llm.selectors import registry_snapshot
from apps.llm.tool_call_deltas import ToolCallDeltas

__all__ = [
    "ChatResult",
    "EmbeddingResult",
    "StreamEvent",
    "ToolCall",
    "ToolCallDeltas",
    "chat_completion",
    "chat_completion_sync",
    "create_embeddings",
    "create_embeddings_sync",
    "credentials_from_secrets",
    "provider_secret_name",
    "stream_chat_completion",
]


@dataclass
class ChatResult:
    content: str
    tool_calls: list[ToolCall]
    usage: dict[str, int]
    provider: str
    model_resolved: str
    finish_reason: str
    upstream_model: str = ""
    request_id: str = ""
    reasoning: str = ""  # the model's reasoning, where the upstream sends it (DeepSeek, Anthropic thinking)


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    model_resolved: str
    usage: dict[str, int]
    provider: str = ""


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Runs `coroutine` on one long-lived event loop of this process, so sync callers (Celery
    tasks, commands) reuse pooled upstream connections instead of a new loop per call."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="llm-gateway-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result()


def provider_secret_name(provider_name: str) -> str:
    """The agent secret that overrides provider `provider_name`'s key: `openai` ->
    `OPENAI_API_KEY`, `openai-eu` -> `OPENAI_EU_API_KEY` (the elizaOS character convention)."""
    return re.sub(r"[^A-Za-z0-9]", "_", provider_name).upper() + "_API_KEY"


async def credentials_from_secrets(secrets: Mapping[str, str]) -> dict[str, str]:
    """provider name -> key, for every provider of the registry an agent secret names."""
    if not any(name.endswith("_API_KEY") for name in secrets):
        return {}
    registry = await registry_snapshot.aget()
    found: dict[str, str] = {}
    for model in registry.models.values():
        for deployment in model.deployments:
            value = secrets.get(provider_secret_name(deployment.provider.name))
            if value:
                found[deployment.provider.name] = value
    return found


def _context(
    agent_id: str | None,
    microdao_id: str | None,
    channel_id: str | None,
    request_id: str | None,
    endpoint: str = Endpoint.GATEWAY,
    credentials: Mapping[str, str] | None = None,
) -> router.CallContext:
    return router.CallContext(
        agent_id=agent_id,
        microdao_id=microdao_id,
        channel_id=channel_id,
        request_id=request_id or f"gw-{uuid.uuid4().hex}",
        endpoint=endpoint,
        credentials=dict(credentials) if credentials else None,
    )


async def chat_completion(
    *,
    model: str,
    messages: list[dict],
    agent_id: str | None = None,
    microdao_id: str | None = None,
    channel_id: str | None = None,
    tools: list[dict] | None = None,
    tool_choice: Any = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    request_id: str | None = None,
    credentials: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> ChatResult:
    """`params`: further OpenAI parameters (seed, stop, top_p, ...), handled as on /v1."""
    ctx = _context(agent_id, microdao_id, channel_id, request_id, credentials=credentials)
    call = router.ChatCall(
        model=model,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        params=dict(params) if params else None,
    )
    response, outcome = await router.chat(call, ctx)
    return ChatResult(
        content=response.content,
        tool_calls=list(response.tool_calls),
        usage=response.usage.as_dict(),
        provider=outcome.provider,
        model_resolved=outcome.model_resolved,
        finish_reason=response.finish_reason,
        upstream_model=outcome.upstream_model,
        request_id=ctx.request_id,
        reasoning=response.reasoning,
    )


def chat_completion_sync(**kwargs: Any) -> ChatResult:
    """chat_completion for sync code (Celery tasks, management commands)."""
    return _run_sync(chat_completion(**kwargs))


async def stream_chat_completion(
    *,
    model: str,
    messages: list[dict],
    agent_id: str | None = None,
    microdao_id: str | None = None,
    channel_id: str | None = None,
    tools: list[dict] | None = None,
    tool_choice: Any = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    request_id: str | None = None,
    credentials: Mapping[str, str] | None = None,
    include_reasoning: bool = False,
    params: Mapping[str, Any] | None = None,
) -> AsyncIterator[StreamEvent]:
    """Yields text and tool-call deltas (providers' StreamEvents, tool names mapped back), then
    one "finish" event with `usage` (a Usage), `finish_reason`, `provider` and `model_resolved`.

    Closing the iterator early (or cancelling its task) closes the upstream stream and
    records the partial usage.
    """
    ctx = _context(agent_id, microdao_id, channel_id, request_id, credentials=credentials)
    call = router.ChatCall(
        model=model,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        params=dict(params) if params else None,
    )
    stream = router.Stream(call, ctx)
    await stream.admit()
    await stream.open()
    async for event in stream.events():
        # Callers written before reasoning existed never see the kind unless they ask for it.
        if event.kind != "reasoning" or include_reasoning:
            yield event


async def create_embeddings(
    *,
    model: str,
    inputs: list[str],
    agent_id: str | None = None,
    credentials: Mapping[str, str] | None = None,
    dimensions: int | None = None,
) -> EmbeddingResult:
    ctx = _context(agent_id, None, None, None, Endpoint.EMBEDDINGS, credentials)
    result, outcome = await router.embed(model_name=model, inputs=inputs, ctx=ctx, dimensions=dimensions)
    used = result.usage
    return EmbeddingResult(
        vectors=result.vectors,
        model_resolved=outcome.model_resolved,
        usage={"prompt_tokens": used.prompt_tokens, "total_tokens": used.total_tokens},
        provider=outcome.provider,
    )


def create_embeddings_sync(**kwargs: Any) -> EmbeddingResult:
    return _run_sync(create_embeddings(**kwargs))
