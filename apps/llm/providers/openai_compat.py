"""The OpenAI-compatible client: OpenAI, DeepSeek, vLLM, Ollama's /v1 and any server that
speaks /chat/completions and /embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from apps.llm.choices import ProviderKind
from apps.llm.providers.base import (
    BaseProvider,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    ProviderError,
    StreamEvent,
    ToolCall,
    Usage,
    error_from_status,
    register_provider,
)
from apps.llm.providers.transport import upstream_message


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), int(reasoning or 0))


def _reasoning(message: dict[str, Any]) -> str:
    # DeepSeek names it reasoning_content; vLLM's and OpenRouter's reasoning parsers `reasoning`.
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


# Fields of an answer's choice / message read into ChatResponse; anything else is passed on.
_CHOICE_READ = frozenset({"index", "message", "finish_reason"})
_MESSAGE_READ = frozenset({"role", "content", "tool_calls", "reasoning_content", "reasoning"})


def _choice(choice: dict[str, Any]) -> ChatResponse:
    message = choice.get("message") or {}
    calls = [
        ToolCall(
            id=str(call.get("id") or f"call_{index}"),
            name=str(call["function"]["name"]),
            arguments=call["function"].get("arguments") or "{}",
        )
        for index, call in enumerate(message.get("tool_calls") or [])
    ]
    extra = {}
    on_choice = {k: v for k, v in choice.items() if k not in _CHOICE_READ and v is not None}
    on_message = {k: v for k, v in message.items() if k not in _MESSAGE_READ and v is not None}
    if on_choice:
        extra["choice"] = on_choice
    if on_message:
        extra["message"] = on_message
    return ChatResponse(
        content=message.get("content") or "",
        tool_calls=calls,
        finish_reason=choice.get("finish_reason") or ("tool_calls" if calls else "stop"),
        reasoning=_reasoning(message),
        extra=extra or None,
    )


# Kinds whose APIs know the completion cap only as max_tokens (DeepSeek's, Ollama's /v1).
MAX_TOKENS_ONLY = frozenset({ProviderKind.DEEPSEEK, ProviderKind.OLLAMA})


def chat_body(request: ChatRequest, *, stream: bool, max_tokens_only: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": request.messages}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.tools:
        body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.params:
        body.update(request.params)  # as the caller sent them: seed, stop, unknown keys, ...
        if max_tokens_only and "max_completion_tokens" in body:
            cap = body.pop("max_completion_tokens")
            body.setdefault("max_tokens", cap)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@register_provider(
    ProviderKind.OPENAI, ProviderKind.DEEPSEEK, ProviderKind.VLLM, ProviderKind.OLLAMA, ProviderKind.OPENAI_COMPATIBLE
)
class OpenAICompatibleProvider(BaseProvider):
    accepts = None  # every parameter goes out as sent; the upstream judges it
    embeds_dimensions = True
    embeds_tokens = True

    def default_headers(self) -> dict[str, str]:
        headers = super().default_headers()
        if self.spec.api_key:
            headers.update(self.auth_headers(self.spec.api_key))
        return headers

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    async def _post_json(self, path: str, body: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
        response = await self.http.post_json(path, body, self.call_headers(api_key))
        if response.status >= 400:
            raise error_from_status(response.status, upstream_message(response), response.headers)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError("malformed", "upstream answered with invalid JSON", status=response.status) from exc
        if not isinstance(data, dict):
            raise ProviderError("malformed", "upstream answered with JSON that is not an object")
        return data

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = chat_body(request, stream=False, max_tokens_only=self.spec.kind in MAX_TOKENS_ONLY)
        data = await self._post_json("/chat/completions", body, request.api_key)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index") or 0)
            first, *rest = [_choice(choice) for choice in choices]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ProviderError("malformed", f"upstream answer lacks {exc}") from exc
        first.usage = _usage(data.get("usage")) or Usage()
        first.alternatives = rest
        return first

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = chat_body(request, stream=True, max_tokens_only=self.spec.kind in MAX_TOKENS_ONLY)
        async with self.http.stream("/chat/completions", body, self.call_headers(request.api_key)) as response:
            if response.status >= 400:
                raw = await response.read()
                raise error_from_status(response.status, upstream_message(raw), response.headers)
            finish_reason, usage = "", None
            async for line in response.lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = orjson.loads(payload)
                except ValueError as exc:
                    raise ProviderError("malformed", "upstream sent an invalid stream chunk") from exc
                if not isinstance(chunk, dict):
                    raise ProviderError("malformed", "upstream sent a stream chunk that is not an object")
                usage = _usage(chunk.get("usage")) or usage
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    reasoning = _reasoning(delta)
                    if reasoning:
                        yield StreamEvent("reasoning", text=reasoning)
                    if delta.get("content"):
                        yield StreamEvent("text", text=delta["content"])
                    for call in delta.get("tool_calls") or []:
                        function = call.get("function") or {}
                        yield StreamEvent(
                            "tool_call",
                            index=int(call.get("index") or 0),
                            id=call.get("id") or "",
                            name=function.get("name") or "",
                            arguments=function.get("arguments") or "",
                        )
                    finish_reason = choice.get("finish_reason") or finish_reason
            yield StreamEvent("finish", finish_reason=finish_reason or "stop", usage=usage)

    async def embed(
        self,
        *,
        model: str,
        inputs: list[Any],
        api_key: str | None = None,
        dimensions: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": model, "input": inputs, **(params or {})}
        if dimensions is not None:
            body["dimensions"] = dimensions
        data = await self._post_json("/embeddings", body, api_key)
        try:
            items = sorted(data["data"], key=lambda item: item.get("index", 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError("malformed", f"upstream embeddings answer is malformed: {exc}") from exc
        if len(vectors) != len(inputs):
            raise ProviderError("malformed", f"asked for {len(inputs)} embeddings, got {len(vectors)}")
        usage = _usage(data.get("usage")) or Usage()
        return EmbeddingResponse(vectors=vectors, usage=Usage(usage.prompt_tokens or usage.total_tokens, 0))
