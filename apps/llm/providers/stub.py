"""The offline `stub` provider: deterministic answers without network, so the demo and the
tests of our own logic run with no key.

- A plain turn is echoed: "[stub] You said: <last user message>".
- When tools are offered and the last user message mentions "project", it calls the offered
  tool that maps to `projects.list` (`projects_list`), or else the first tool with "project"
  in its name; after a tool result it answers with text built from that result.
- Usage is counted in words; embeddings are hashed bags of words (similar texts score
  higher), 384 dimensions unless the upstream model name ends in `-<dims>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

from apps.llm.choices import ProviderKind
from apps.llm.providers.base import (
    BaseProvider,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    StreamEvent,
    ToolCall,
    Usage,
    register_provider,
)

DEFAULT_DIMENSIONS = 384
_WORD = re.compile(r"\w+", re.UNICODE)
_MICRODAO = re.compile(r"microdao:[\w.-]+")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_words(_text(m.get("content"))) + 1 for m in messages)


def _project_tool(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    functions = [t.get("function") or {} for t in tools if t.get("type", "function") == "function"]
    for function in functions:
        if re.sub(r"[^a-z0-9]", "_", str(function.get("name", "")).lower()) == "projects_list":
            return function
    for function in functions:
        if "project" in str(function.get("name", "")).lower():
            return function
    return None


def _arguments_for(function: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    properties = (function.get("parameters") or {}).get("properties") or {}
    arguments: dict[str, Any] = {}
    if "microdao_id" in properties:
        for message in reversed(messages):
            found = _MICRODAO.search(_text(message.get("content")))
            if found:
                arguments["microdao_id"] = found.group(0)
                break
    return arguments


def answer(request: ChatRequest) -> ChatResponse:
    messages = request.messages
    last = messages[-1] if messages else {}
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    user_text = _text(last_user.get("content")).strip()
    prompt_tokens = _prompt_tokens(messages)
    if last.get("role") == "tool":
        result = _text(last.get("content")).strip()
        content = f"[stub] Based on the tool result: {result[:500]}"
        return ChatResponse(content, usage=Usage(prompt_tokens, count_words(content)))
    if request.tools and request.tool_choice != "none" and "project" in user_text.lower():
        function = _project_tool(request.tools)
        if function is not None:
            digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:12]
            call = ToolCall(
                id=f"call_{digest}",
                name=str(function["name"]),
                arguments=json.dumps(_arguments_for(function, messages)),
            )
            return ChatResponse("", tool_calls=[call], usage=Usage(prompt_tokens, 5), finish_reason="tool_calls")
    content = f"[stub] You said: {user_text}" if user_text else "[stub] Hello."
    cap = (request.params or {}).get("max_completion_tokens") or request.max_tokens
    if cap is not None:
        words = content.split(" ")
        if len(words) > cap:
            content = " ".join(words[: max(1, cap)])
            return ChatResponse(content, usage=Usage(prompt_tokens, count_words(content)), finish_reason="length")
    return ChatResponse(content, usage=Usage(prompt_tokens, count_words(content)))


def embed_text(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        # Empty text still needs a unit vector (cosine distance is undefined for zero).
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


def dimensions_of(model: str) -> int:
    found = re.search(r"-(\d{1,5})$", model)
    return max(1, min(int(found.group(1)), 16000)) if found else DEFAULT_DIMENSIONS


@register_provider(ProviderKind.STUB)
class StubProvider(BaseProvider):
    accepts = frozenset({"max_completion_tokens"})  # the one cap it knows by either name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = answer(request)
        for index, call in enumerate(response.tool_calls):
            yield StreamEvent("tool_call", index=index, id=call.id, name=call.name, arguments=call.arguments)
        pieces = re.findall(r"\S+\s*", response.content)
        for piece in pieces:
            await asyncio.sleep(0)  # a real stream yields to the loop between chunks
            yield StreamEvent("text", text=piece)
        yield StreamEvent("finish", finish_reason=response.finish_reason, usage=response.usage)

    async def embed(
        self,
        *,
        model: str,
        inputs: list[Any],
        api_key: str | None = None,
        dimensions: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> EmbeddingResponse:
        dimensions = dimensions_of(model)
        vectors = [embed_text(text, dimensions) for text in inputs]
        return EmbeddingResponse(vectors=vectors, usage=Usage(sum(count_words(t) for t in inputs), 0))
