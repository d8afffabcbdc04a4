"""Anthropic's Messages API (POST /v1/messages) on the chat router: a request is translated
into a ChatCall in OpenAI's vocabulary (so every provider kind serves it, with limits,
fallbacks, usage and budgets as on chat), the answer and its stream back into Anthropic's
message and events. The Anthropic SDK and Claude Code use it with `x-api-key: <service token>`
(or a Bearer token)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from apps.llm import router as llm_router
from apps.llm.errors import anthropic_error
from apps.llm.providers import ChatResponse
from daarion.infra import sse
from daarion.infra.errors import BadRequest, DaarionError


def _bad(message: str, param: str) -> BadRequest:
    # Anthropic's errors name no field; the message does.
    return BadRequest(f"{param}: {message}", type="invalid_request_error", details={"param": param})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{source.get('media_type')};base64,{source.get('data')}"}}
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source.get("url")}}
    raise _bad("an image source must be base64 or url", f"{where}.source")


def _messages(payload: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if payload.system:
        out.append({"role": "system", "content": _text(payload.system)})
    for index, message in enumerate(payload.messages):
        at = f"messages.{index}"
        role, content = message.role, message.content
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for number, block in enumerate(content):
            where = f"{at}.content.{number}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(block.get("text") or "")})
            elif kind == "image" and role == "user":
                parts.append(_image(block, where))
            elif kind == "tool_use" and role == "assistant":
                calls.append(
                    {
                        "id": str(block.get("id") or ""),
                        "type": "function",
                        "function": {"name": str(block.get("name") or ""), "arguments": json.dumps(block.get("input") or {})},
                    }
                )
            elif kind == "tool_result" and role == "user":
                result = _text(block.get("content"))
                if block.get("is_error"):
                    result = f"[error] {result}"
                out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": result})
            elif kind in ("thinking", "redacted_thinking"):
                continue  # earlier reasoning: chat upstreams take none back
            else:
                raise _bad(f"content block type {kind!r} is not supported in a {role} message", f"{where}.type")
        if role == "assistant":
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            message_out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message_out["tool_calls"] = calls
            out.append(message_out)
        elif parts:
            only_text = all(p["type"] == "text" for p in parts)
            out.append({"role": "user", "content": "".join(p["text"] for p in parts) if only_text else parts})
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom") or not tool.get("name"):
            raise _bad("only client tools with a name and input_schema are supported", f"tools.{index}")
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool]:
    """(OpenAI's tool_choice, whether parallel calls are switched off)."""
    if not choice:
        return None, False
    kind = choice.get("type")
    mapped: str | dict[str, Any] | None = {"auto": "auto", "any": "required", "none": "none"}.get(kind or "")
    if kind == "tool" and choice.get("name"):
        mapped = {"type": "function", "function": {"name": choice["name"]}}
    if mapped is None:
        raise _bad("tool_choice type must be auto, any, tool or none", "tool_choice")
    return mapped, bool(choice.get("disable_parallel_tool_use"))


def chat_call(payload: Any) -> llm_router.ChatCall:
    params: dict[str, Any] = {}
    if payload.stop_sequences:
        params["stop"] = payload.stop_sequences
    if payload.top_p is not None:
        params["top_p"] = payload.top_p
    if payload.top_k is not None:
        params["top_k"] = payload.top_k
    if payload.metadata and payload.metadata.get("user_id"):
        params["user"] = str(payload.metadata["user_id"])
    if payload.thinking:
        params["thinking"] = payload.thinking
    choice, serial = _tool_choice(payload.tool_choice)
    if serial:
        params["parallel_tool_calls"] = False
    config = payload.output_config or {}
    if config.get("effort"):
        params["reasoning_effort"] = config["effort"]
    response_format = None
    fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}
    elif fmt:
        raise _bad("output_config.format must be {type: json_schema, schema}", "output_config.format")
    return llm_router.ChatCall(
        model=payload.model,
        messages=_messages(payload),
        temperature=payload.temperature,
        max_tokens=payload.max_tokens,
        tools=_tools(payload.tools),
        tool_choice=choice,
        response_format=response_format,
        params=params or None,
    )


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw or "{}")
    except ValueError:
        return {}


def _usage(usage: Any) -> dict[str, int]:
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def new_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def message_of(payload: Any, message_id: str, answer: ChatResponse) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.reasoning:
        content.append({"type": "thinking", "thinking": answer.reasoning, "signature": ""})
    if answer.content:
        content.append({"type": "text", "text": answer.content})
    for call in answer.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _arguments(call.arguments)})
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": payload.model,
        "content": content,
        "stop_reason": _STOP.get(answer.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": _usage(answer.usage),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return sse.event({"type": kind, **data}, name=kind)


async def events(routed: llm_router.Stream, payload: Any, message_id: str) -> AsyncIterator[bytes]:
    """Anthropic's stream: message_start, each content block's start / deltas / stop,
    message_delta with the stop reason and usage, message_stop."""
    estimate = routed.prompt_estimate  # the upstream's own count arrives with the last event
    yield _event(
        "message_start",
        {
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": payload.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": estimate,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
        },
    )
    index = -1
    open_kind: str | None = None  # "text" / "thinking" / "tool": the block being written
    calls: dict[int, int] = {}  # upstream tool-call index -> block index

    def stop_open() -> list[bytes]:
        nonlocal open_kind
        if open_kind is None:
            return []
        open_kind = None
        return [_event("content_block_stop", {"index": index})]

    try:
        async for event in routed.events():
            if event.kind in ("text", "reasoning"):
                kind = "text" if event.kind == "text" else "thinking"
                if open_kind != kind:
                    for chunk in stop_open():
                        yield chunk
                    index += 1
                    open_kind = kind
                    block = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": ""}
                    yield _event("content_block_start", {"index": index, "content_block": block})
                delta = (
                    {"type": "text_delta", "text": event.text}
                    if kind == "text"
                    else {"type": "thinking_delta", "thinking": event.text}
                )
                yield _event("content_block_delta", {"index": index, "delta": delta})
            elif event.kind == "tool_call":
                if event.index not in calls:
                    for chunk in stop_open():  # a block ends where the next begins
                        yield chunk
                    index += 1
                    open_kind = "tool"
                    calls[event.index] = index
                    yield _event(
                        "content_block_start",
                        {
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": event.id or f"toolu_{uuid.uuid4().hex[:24]}",
                                "name": event.name,
                                "input": {},
                            },
                        },
                    )
                if event.arguments:
                    yield _event(
                        "content_block_delta",
                        {"index": calls[event.index], "delta": {"type": "input_json_delta", "partial_json": event.arguments}},
                    )
            elif event.kind == "finish":
                for chunk in stop_open():
                    yield chunk
                usage = routed.outcome.usage
                yield _event(
                    "message_delta",
                    {
                        "delta": {"stop_reason": _STOP.get(event.finish_reason or "stop", "end_turn"), "stop_sequence": None},
                        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
                    },
                )
                yield _event("message_stop", {})
    except DaarionError as exc:
        yield _event("error", {"error": anthropic_error(exc.status, exc.type, exc.message, exc.details)[1]["error"]})
