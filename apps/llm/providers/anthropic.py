"""The Anthropic Messages API adapter: converts OpenAI-style messages, tools, stream events
and usage to and from Anthropic's shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson

from apps.llm.choices import ProviderKind
from apps.llm.providers.base import (
    BaseProvider,
    ChatRequest,
    ChatResponse,
    ProviderError,
    StreamEvent,
    ToolCall,
    Usage,
    error_from_status,
    register_provider,
)
from apps.llm.providers.transport import upstream_message

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # Anthropic requires max_tokens; OpenAI callers often omit it
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants user and assistant turns to alternate: merge neighbours of one role.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def to_anthropic(request: ChatRequest) -> dict[str, Any]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
        elif role == "tool":
            _append(
                messages,
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id") or "",
                        "content": _text_of(message.get("content")),
                    }
                ],
            )
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = _text_of(message.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
            _append(messages, "assistant", blocks or [{"type": "text", "text": ""}])
        else:
            _append(messages, "user", [{"type": "text", "text": _text_of(message.get("content"))}])
    params = request.params or {}
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        # OpenAI's two names for the cap are one here.
        "max_tokens": params.get("max_completion_tokens") or request.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    if params.get("stop"):
        body["stop_sequences"] = [params["stop"]] if isinstance(params["stop"], str) else list(params["stop"])
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    for name in ("top_k", "thinking"):  # Anthropic's own, from its door (/v1/messages)
        if params.get(name) is not None:
            body[name] = params[name]
    if request.tools:
        body["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                "input_schema": tool["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in request.tools
            if tool.get("type", "function") == "function"
        ]
        choice = request.tool_choice
        if choice == "required":
            body["tool_choice"] = {"type": "any"}
        elif choice in ("auto", "none"):
            body["tool_choice"] = {"type": choice}
        elif isinstance(choice, dict) and choice.get("function", {}).get("name"):
            body["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
        if params.get("parallel_tool_calls") is False and body.get("tool_choice", {}).get("type") != "none":
            body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
    return body


def from_anthropic(data: dict[str, Any]) -> ChatResponse:
    text, calls, thinking = [], [], []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "thinking":
            thinking.append(block.get("thinking", ""))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=json.dumps(block.get("input") or {})))
    usage = data.get("usage") or {}
    return ChatResponse(
        content="".join(text),
        tool_calls=calls,
        usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
        finish_reason=_STOP_REASONS.get(data.get("stop_reason") or "", "stop"),
        reasoning="".join(thinking),
    )


@register_provider(ProviderKind.ANTHROPIC)
class AnthropicProvider(BaseProvider):
    # Mapped in to_anthropic; anything else (seed, penalties, logprobs, n > 1, ...) has no
    # Anthropic counterpart.
    accepts = frozenset({"max_completion_tokens", "top_p", "stop", "user", "parallel_tool_calls", "top_k", "thinking"})

    def default_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, **super().default_headers()}
        if self.spec.api_key:
            headers.update(self.auth_headers(self.spec.api_key))
        return headers

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    @property
    def _path(self) -> str:
        return "/messages" if self.spec.base_url.rstrip("/").endswith("/v1") else "/v1/messages"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        response = await self.http.post_json(self._path, to_anthropic(request), self.call_headers(request.api_key))
        if response.status >= 400:
            raise error_from_status(response.status, upstream_message(response), response.headers)
        try:
            return from_anthropic(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProviderError("malformed", "upstream answered with an unreadable message") from exc

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = {**to_anthropic(request), "stream": True}
        prompt_tokens = completion_tokens = 0
        finish_reason = "stop"
        tool_index: dict[int, int] = {}  # Anthropic block index -> our tool call index
        async with self.http.stream(self._path, body, self.call_headers(request.api_key)) as response:
            if response.status >= 400:
                raw = await response.read()
                raise error_from_status(response.status, upstream_message(raw), response.headers)
            async for line in response.lines():
                if not line.startswith("data:"):
                    continue
                try:
                    event = orjson.loads(line[5:].strip())
                except ValueError as exc:
                    raise ProviderError("malformed", "upstream sent an invalid stream event") from exc
                if not isinstance(event, dict):
                    raise ProviderError("malformed", "upstream sent a stream event that is not an object")
                kind = event.get("type")
                if kind == "message_start":
                    usage = (event.get("message") or {}).get("usage") or {}
                    prompt_tokens = int(usage.get("input_tokens") or 0)
                    completion_tokens = int(usage.get("output_tokens") or 0)
                elif kind == "content_block_start":
                    block = event.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        index = tool_index.setdefault(event.get("index", 0), len(tool_index))
                        yield StreamEvent("tool_call", index=index, id=block.get("id", ""), name=block.get("name", ""))
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield StreamEvent("text", text=delta["text"])
                    elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                        yield StreamEvent("reasoning", text=delta["thinking"])
                    elif delta.get("type") == "input_json_delta":
                        index = tool_index.get(event.get("index", 0), 0)
                        yield StreamEvent("tool_call", index=index, arguments=delta.get("partial_json", ""))
                elif kind == "message_delta":
                    stop = (event.get("delta") or {}).get("stop_reason")
                    finish_reason = _STOP_REASONS.get(stop or "", finish_reason)
                    usage = event.get("usage") or {}
                    completion_tokens = int(usage.get("output_tokens") or completion_tokens)
                elif kind == "error":
                    error = event.get("error") or {}
                    raise ProviderError("server", str(error.get("message") or "upstream stream error"))
                elif kind == "message_stop":
                    break
        yield StreamEvent("finish", finish_reason=finish_reason, usage=Usage(prompt_tokens, completion_tokens))
