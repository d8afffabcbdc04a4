"""Ninja routers of the LLM proxy: /internal/llm and the OpenAI-compatible /v1.

Thin: parse, decide who the call is for, call the router, shape the answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from apps.llm import messages as llm_messages
from apps.llm import ratelimit as llm_ratelimit
from apps.llm import responses as llm_responses
from apps.llm import router as llm_router
from apps.llm.choices import Endpoint
from apps.llm.errors import openai_error
from apps.llm.schemas import (
    CHAT_PARAMS,
    BatchIn,
    BatchOut,
    ChatCompletionIn,
    CountTokensIn,
    EmbeddingsIn,
    MessagesIn,
    ModelsOut,
    ProxyIn,
    ProxyOut,
    ResponsesIn,
)
from apps.llm.selectors import call_microdao, registry_snapshot
from apps.llm.tool_call_deltas import ToolCallDeltas
from daarion import fastlane
from daarion.infra import sse
from apps.access.auth import Principal, ServiceTokenAuth, principal_of
from daarion.infra.errors import BadRequest, DaarionError, ValidationFailed
from daarion.infra.ui_message_stream import PROTOCOL_HEADERS, UIMessageStream


class AnthropicTokenAuth(ServiceTokenAuth):
    """A service token as Bearer, or as Anthropic's `x-api-key` header (the Anthropic SDK and
    Claude Code send it there)."""

    async def __call__(self, request: HttpRequest) -> Principal:
        key = request.META.get("HTTP_X_API_KEY")
        if key and not request.META.get("HTTP_AUTHORIZATION"):
            request.META["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        return await super().__call__(request)


router = Router(tags=["llm"], auth=ServiceTokenAuth("llm"))
openai_router = Router(tags=["openai"], auth=ServiceTokenAuth("llm"))


# --- helpers ------------------------------------------------------------------------------


def _started(request: HttpRequest) -> float:
    return getattr(request, "_started_at", time.perf_counter())


def _set_headers(response: HttpResponseBase, outcome: llm_router.Outcome) -> None:
    response["x-daarion-overhead-ms"] = f"{outcome.overhead_ms():.2f}"
    for name, value in outcome.rate_headers.items():
        response[name] = value
    if outcome.provider:
        response["x-daarion-provider"] = outcome.provider
        response["x-daarion-model-resolved"] = outcome.model_resolved
    if outcome.dropped_params:
        response["x-daarion-dropped-params"] = ", ".join(outcome.dropped_params)


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump(exclude_none=True) for item in items]


def _tools(items: list[Any] | None) -> list[dict[str, Any]] | None:
    return [item.model_dump(exclude_none=True) for item in items] if items else None


def _params(payload: ProxyIn | ChatCompletionIn, extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """The optional OpenAI parameters the caller set (nulls mean "the default": left out),
    then any further keys as they came."""
    fields = payload.__dict__
    params = {name: fields[name] for name in CHAT_PARAMS if fields[name] is not None}
    if extra:
        params.update((k, v) for k, v in extra.items() if v is not None)
    return params or None


def _call(payload: ProxyIn | ChatCompletionIn, params: dict[str, Any] | None) -> llm_router.ChatCall:
    return llm_router.ChatCall(
        model=payload.model,
        messages=_messages(payload.messages),
        temperature=payload.temperature,
        max_tokens=payload.max_tokens,
        tools=_tools(payload.tools),
        tool_choice=payload.tool_choice,
        response_format=payload.response_format,
        params=params,
    )


def _proxy_call(payload: ProxyIn) -> llm_router.ChatCall:
    if payload.n is not None and payload.n > 1:  # the house answer has one content, not choices
        raise BadRequest("n > 1 is served on /v1/chat/completions only", type="unsupported_parameter", details={"param": "n"})
    return _call(payload, _params(payload, payload.extra_body))


async def _proxy_context(request: HttpRequest, payload: ProxyIn, endpoint: str) -> llm_router.CallContext:
    principal = principal_of(request)
    agent_id = principal.acting_agent(payload.metadata.agent_id, source="body.metadata.agent_id", required=False)
    return llm_router.CallContext(
        agent_id=agent_id,
        microdao_id=await call_microdao(principal=principal, agent_id=agent_id, named=payload.metadata.microdao_id),
        channel_id=payload.metadata.channel_id,
        request_id=payload.request_id or request.request_id,  # type: ignore[attr-defined]
        endpoint=endpoint,
    )


def _event_stream(
    body: AsyncIterator[bytes], routed: llm_router.Stream, headers: dict[str, str] | None = None
) -> StreamingHttpResponse:
    """A routed stream's answer: the events with a heartbeat while the upstream is quiet."""
    response = StreamingHttpResponse(
        sse.with_heartbeat(body, float(settings.LLM_STREAM_HEARTBEAT_SECONDS)),
        content_type="text/event-stream",
        headers={**sse.HEADERS, **(headers or {})},
    )
    _set_headers(response, routed.outcome)
    return response


def _proxy_out(response: Any, outcome: llm_router.Outcome, request_id: str) -> dict[str, Any]:
    return {
        "content": response.content,
        "reasoning_content": response.reasoning or None,
        "usage": response.usage.as_dict(),
        "provider": outcome.provider,
        "model_resolved": outcome.model_resolved,
        "upstream_model": outcome.upstream_model,
        "finish_reason": response.finish_reason,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        "request_id": request_id,
    }


# --- /internal/llm ------------------------------------------------------------------------


@router.post("/proxy", response={200: ProxyOut})
async def proxy(request: HttpRequest, payload: ProxyIn, response: HttpResponse) -> dict[str, Any]:
    """One chat completion through the router (the seed's request and response)."""
    ctx = await _proxy_context(request, payload, Endpoint.PROXY)
    outcome = llm_router.Outcome(logical_model=payload.model, started=_started(request))
    answer, outcome = await llm_router.chat(_proxy_call(payload), ctx, outcome)
    _set_headers(response, outcome)
    return _proxy_out(answer, outcome, ctx.request_id)


@router.post("/stream")
async def stream(request: HttpRequest, payload: ProxyIn) -> StreamingHttpResponse:
    """The same request, answered as a Vercel AI SDK UI message stream.

    Unknown model, bad input and rate limits answer with an HTTP error before the stream;
    failures after it started arrive as an `error` chunk.
    """
    ctx = await _proxy_context(request, payload, Endpoint.STREAM)
    routed = llm_router.Stream(_proxy_call(payload), ctx)
    routed.outcome.started = _started(request)
    routed.finish_with(asyncio.current_task())
    await routed.admit()
    return _event_stream(_ui_message_stream(routed, ctx.request_id), routed, PROTOCOL_HEADERS)


async def _ui_message_stream(routed: llm_router.Stream, message_id: str) -> AsyncIterator[bytes]:
    ui = UIMessageStream()
    deltas = ToolCallDeltas()
    for chunk in [*ui.start(message_id), *ui.start_step()]:
        yield sse.event(chunk)
    try:
        await routed.open()
        async for event in routed.events():
            chunks: list[dict[str, Any]] = []
            if event.kind == "reasoning":
                chunks = ui.reasoning(event.text)
            elif event.kind == "text":
                chunks = ui.text(event.text)
            elif event.kind == "tool_call":
                call, began = deltas.add(index=event.index, id=event.id, name=event.name, arguments=event.arguments)
                if began:
                    chunks += ui.tool_input_start(call.id, call.name)
                if event.arguments:
                    chunks += ui.tool_input_delta(call.id, event.arguments)
            elif event.kind == "finish":
                for call in deltas.calls():
                    chunks += ui.tool_input_available(call.id, call.name, call.parsed_arguments())
                outcome = routed.outcome
                chunks += [
                    *ui.finish_step(),
                    *ui.finish(
                        {
                            "usage": outcome.usage.as_dict(),
                            "provider": outcome.provider,
                            "model_resolved": outcome.model_resolved,
                            "finish_reason": outcome.finish_reason,
                            "request_id": message_id,
                        }
                    ),
                ]
            for chunk in chunks:
                yield sse.event(chunk)
    except DaarionError as exc:
        for chunk in ui.error(f"{exc.type}: {exc.message}"):
            yield sse.event(chunk)
    yield sse.DONE


@router.post("/batch", response={200: BatchOut})
async def batch(request: HttpRequest, payload: BatchIn) -> dict[str, Any]:
    """Many proxy requests at once, at most `concurrency` in flight; answers in order."""
    if len(payload.requests) > settings.LLM_BATCH_MAX_ITEMS:
        raise ValidationFailed(
            f"at most {settings.LLM_BATCH_MAX_ITEMS} requests per batch, got {len(payload.requests)}",
            details=[{"path": "body.requests", "message": f"at most {settings.LLM_BATCH_MAX_ITEMS} items"}],
        )
    # Resolve every item's agent first: a token that may not act for one agent fails the batch.
    contexts = [await _proxy_context(request, item, Endpoint.BATCH) for item in payload.requests]
    for index, ctx in enumerate(contexts):
        if not payload.requests[index].request_id:
            ctx.request_id = f"{request.request_id}-{index}"  # type: ignore[attr-defined]
    limit = asyncio.Semaphore(min(payload.concurrency or settings.LLM_BATCH_CONCURRENCY, settings.LLM_BATCH_CONCURRENCY))

    async def run(index: int) -> dict[str, Any]:
        item, ctx = payload.requests[index], contexts[index]
        async with limit:
            try:
                answer, outcome = await llm_router.chat(_proxy_call(item), ctx)
            except DaarionError as exc:
                return {
                    "index": index,
                    "ok": False,
                    "status": exc.status,
                    "error": {"type": exc.type, "message": exc.message, "details": exc.details},
                }
        return {"index": index, "ok": True, "status": 200, "response": _proxy_out(answer, outcome, ctx.request_id)}

    results = await asyncio.gather(*(run(i) for i in range(len(payload.requests))))
    return {"results": list(results)}


@router.get("/models", response={200: ModelsOut})
async def models(request: HttpRequest) -> dict[str, Any]:
    """Logical models with their deployments and each deployment's health."""
    registry = await registry_snapshot.aget()
    ids = [d.id for spec in registry.models.values() for d in spec.deployments]
    state = await llm_router.health.state(ids)
    out = []
    for spec in sorted(registry.models.values(), key=lambda s: s.name):
        deployments = []
        for d in spec.deployments:
            s = state.get(d.id, {"cooling_down": False, "cooldown_remaining_s": 0.0, "recent_failures": 0})
            deployments.append(
                {
                    "id": d.id,
                    "provider": d.provider.name,
                    "provider_kind": d.provider.kind,
                    "upstream_model": d.upstream_model,
                    "weight": d.weight,
                    "rpm_limit": d.rpm_limit,
                    "tpm_limit": d.tpm_limit,
                    "healthy": not s["cooling_down"],
                    **s,
                }
            )
        out.append(
            {
                "name": spec.name,
                "enabled": spec.enabled,
                "can_embed": spec.can_embed,
                "context_window": spec.context_window,
                "input_price_per_mtok": float(spec.input_price_per_mtok),
                "output_price_per_mtok": float(spec.output_price_per_mtok),
                "fallbacks": list(spec.fallbacks),
                "healthy": spec.enabled and any(d["healthy"] for d in deployments),
                "deployments": deployments,
            }
        )
    return {"models": out}


# --- /v1 (OpenAI-compatible) --------------------------------------------------------------


_HEADER_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,200}")  # the body's metadata ids follow the same rule


def _header_id(request: HttpRequest, name: str) -> str | None:
    # META, not request.headers (see apps.access.auth._bearer): X-Agent-Id -> HTTP_X_AGENT_ID.
    value = request.META.get("HTTP_" + name.upper().replace("-", "_")) or None
    if value is not None and not _HEADER_ID.fullmatch(value):
        raise ValidationFailed(
            f"{name} header: 1-200 letters, digits or . _ : @ / -",
            details=[{"path": f"{name} header", "message": "1-200 letters, digits or . _ : @ / -"}],
        )
    return value


async def _v1_context(request: HttpRequest, endpoint: str) -> llm_router.CallContext:
    principal = principal_of(request)
    agent_id = principal.acting_agent(_header_id(request, "X-Agent-Id"), source="X-Agent-Id header", required=False)
    return llm_router.CallContext(
        agent_id=agent_id,
        microdao_id=await call_microdao(principal=principal, agent_id=agent_id, named=_header_id(request, "X-Microdao-Id")),
        channel_id=_header_id(request, "X-Channel-Id"),
        request_id=request.request_id,  # type: ignore[attr-defined]
        endpoint=endpoint,
    )


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req-")


def _openai_tool_calls(calls: list[Any]) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def _openai_choice(index: int, answer: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content if not answer.tool_calls else (answer.content or None),
    }
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = _openai_tool_calls(answer.tool_calls)
    choice: dict[str, Any] = {"index": index, "message": message, "finish_reason": answer.finish_reason}
    if answer.extra:  # what else the upstream said (logprobs, refusal, annotations, ...)
        choice.update(answer.extra.get("choice") or {})
        message.update(answer.extra.get("message") or {})
    return choice


@openai_router.post("/chat/completions")
async def chat_completions(request: HttpRequest, payload: ChatCompletionIn, response: HttpResponse) -> Any:
    """OpenAI's chat completions, streamed (`stream: true`) or not."""
    ctx = await _v1_context(request, Endpoint.CHAT)
    params = _params(payload, payload.model_extra)
    if payload.metadata is not None:  # OpenAI's own metadata on this door
        params = {**(params or {}), "metadata": payload.metadata}
    call = _call(payload, params)
    created = int(time.time())
    if not payload.stream:
        outcome = llm_router.Outcome(logical_model=payload.model, started=_started(request))
        answer, outcome = await llm_router.chat(call, ctx, outcome)
        _set_headers(response, outcome)
        return {
            "id": _completion_id(ctx.request_id),
            "object": "chat.completion",
            "created": created,
            "model": payload.model,
            "choices": [_openai_choice(i, a) for i, a in enumerate([answer, *answer.alternatives])],
            "usage": answer.usage.openai_dict(),
            "system_fingerprint": None,
        }
    if payload.n is not None and payload.n > 1:
        raise BadRequest("n > 1 is answered only without streaming", type="unsupported_parameter", details={"param": "n"})
    routed = llm_router.Stream(call, ctx)
    routed.outcome.started = _started(request)
    routed.finish_with(asyncio.current_task())
    await routed.admit()
    # Open before answering: an SDK expects failures as HTTP statuses, not inside a stream.
    await routed.open()
    include_usage = bool(payload.stream_options and payload.stream_options.include_usage)
    return _event_stream(_openai_stream(routed, ctx.request_id, payload.model, created, include_usage), routed)


# Both also go through the fast lane (daarion/fastlane/): the same view, schema and auth.
fastlane.register("/internal/llm/proxy", method="POST", api="internal", view=proxy, schema=ProxyIn, auth=router.auth)
fastlane.register(
    "/v1/chat/completions", method="POST", api="v1", view=chat_completions, schema=ChatCompletionIn, auth=openai_router.auth
)


async def _openai_stream(
    routed: llm_router.Stream, request_id: str, model: str, created: int, include_usage: bool
) -> AsyncIterator[bytes]:
    base = {"id": _completion_id(request_id), "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse.event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    ids: dict[int, str] = {}
    try:
        async for event in routed.events():
            if event.kind == "text":
                yield chunk({"content": event.text})
            elif event.kind == "reasoning":
                yield chunk({"reasoning_content": event.text})
            elif event.kind == "tool_call":
                piece: dict[str, Any] = {"index": event.index}
                if event.index not in ids:
                    ids[event.index] = event.id or f"call_{uuid.uuid4().hex[:12]}"
                    piece.update(
                        {
                            "id": ids[event.index],
                            "type": "function",
                            "function": {"name": event.name, "arguments": event.arguments},
                        }
                    )
                else:
                    piece["function"] = {"arguments": event.arguments}
                yield chunk({"tool_calls": [piece]})
            elif event.kind == "finish":
                yield chunk({}, event.finish_reason or "stop")
                if include_usage:
                    yield sse.event({**base, "choices": [], "usage": routed.outcome.usage.openai_dict()})
    except DaarionError as exc:
        yield sse.event(openai_error(exc.status, exc.type, exc.message, exc.details)[1])
    yield sse.DONE


@openai_router.get("/models")
async def list_models(request: HttpRequest) -> dict[str, Any]:
    registry = await registry_snapshot.aget()
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "daarion"}
            for name, spec in sorted(registry.models.items())
            if spec.enabled
        ],
    }


@openai_router.get("/models/{model_id}")
async def retrieve_model(request: HttpRequest, model_id: str) -> dict[str, Any]:
    """One enabled logical model, as OpenAI's models.retrieve reads it."""
    registry = await llm_router.fresh_registry(model_id)
    spec = registry.models.get(model_id)
    if spec is None or not spec.enabled:
        llm_router.resolve_model(registry, model_id)  # raises the same model_not_found as a call would
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "daarion"}


@openai_router.post("/responses")
async def create_response(request: HttpRequest, payload: ResponsesIn, response: HttpResponse) -> Any:
    """OpenAI's Responses API, translated onto the chat router (apps/llm/responses.py)."""
    ctx = await _v1_context(request, Endpoint.RESPONSES)
    call, conversation = await llm_responses.chat_call(payload)
    response_id, created = llm_responses.new_id(), llm_responses.now()
    if not payload.stream:
        outcome = llm_router.Outcome(logical_model=payload.model, started=_started(request))
        answer, outcome = await llm_router.chat(call, ctx, outcome)
        _set_headers(response, outcome)
        done = llm_responses.response_object(
            payload,
            response_id,
            created,
            status="completed",
            output=llm_responses.output_of(answer),
            usage=answer.usage,
            finish_reason=answer.finish_reason,
        )
        if payload.store is not False:
            await llm_responses.remember(done, conversation)
        return done
    routed = llm_router.Stream(call, ctx)
    routed.outcome.started = _started(request)
    routed.finish_with(asyncio.current_task())
    await routed.admit()
    await routed.open()  # failures before the first byte are HTTP errors, as the SDKs expect
    return _event_stream(llm_responses.events(routed, payload, response_id, created, conversation), routed)


# The Responses API rides the fast lane too: its full-stack cost kept it from holding 500/s.
fastlane.register("/v1/responses", method="POST", api="v1", view=create_response, schema=ResponsesIn, auth=openai_router.auth)


@openai_router.get("/responses/{response_id}")
async def retrieve_response(request: HttpRequest, response_id: str) -> dict[str, Any]:
    """A stored response (store not false), while it is kept."""
    return await llm_responses.stored(response_id)


@openai_router.delete("/responses/{response_id}")
async def delete_response(request: HttpRequest, response_id: str) -> dict[str, Any]:
    await llm_responses.forget(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@openai_router.post("/messages", auth=AnthropicTokenAuth("llm"))
async def create_message(request: HttpRequest, payload: MessagesIn, response: HttpResponse) -> Any:
    """Anthropic's Messages API, translated onto the chat router (apps/llm/messages.py)."""
    ctx = await _v1_context(request, Endpoint.MESSAGES)
    call = llm_messages.chat_call(payload)
    message_id = llm_messages.new_id()
    if not payload.stream:
        outcome = llm_router.Outcome(logical_model=payload.model, started=_started(request))
        answer, outcome = await llm_router.chat(call, ctx, outcome)
        _set_headers(response, outcome)
        return llm_messages.message_of(payload, message_id, answer)
    routed = llm_router.Stream(call, ctx)
    routed.outcome.started = _started(request)
    routed.finish_with(asyncio.current_task())
    await routed.admit()
    await routed.open()
    return _event_stream(llm_messages.events(routed, payload, message_id), routed)


@openai_router.post("/messages/count_tokens", auth=AnthropicTokenAuth("llm"))
async def count_message_tokens(request: HttpRequest, payload: CountTokensIn) -> dict[str, Any]:
    """Anthropic's token count, estimated as the rate limiter does (4 characters a token,
    tools included): no upstream is asked, so it is a guess, not the model's tokenizer."""
    call = llm_messages.chat_call(payload)
    registry = await llm_router.fresh_registry(payload.model)
    llm_router.resolve_model(registry, payload.model)
    tools = len(json.dumps(call.tools)) // 4 if call.tools else 0
    return {"input_tokens": llm_ratelimit.estimate_tokens(call.messages, 1) - 1 + tools}


@openai_router.post("/embeddings")
async def embeddings(request: HttpRequest, payload: EmbeddingsIn, response: HttpResponse) -> dict[str, Any]:
    ctx = await _v1_context(request, Endpoint.EMBEDDINGS)
    raw = payload.input
    # One input (a string, or one list of token ids) or many.
    inputs: list[Any] = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
    if any(len(item) > 100_000 for item in inputs):
        raise BadRequest("an input is over 100000 characters (or tokens)", type="input_too_long", details={"param": "input"})
    params = {k: v for k, v in (payload.model_extra or {}).items() if v is not None}
    if payload.user is not None:
        params["user"] = payload.user
    outcome = llm_router.Outcome(logical_model=payload.model, started=_started(request))
    result, outcome = await llm_router.embed(
        model_name=payload.model, inputs=inputs, ctx=ctx, outcome=outcome, dimensions=payload.dimensions, params=params or None
    )
    _set_headers(response, outcome)

    def encode(vector: list[float]) -> list[float] | str:
        if payload.encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return vector

    return {
        "object": "list",
        "model": payload.model,
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(result.vectors)],
        "usage": {"prompt_tokens": result.usage.prompt_tokens, "total_tokens": result.usage.prompt_tokens},
    }
