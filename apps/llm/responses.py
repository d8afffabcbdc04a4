"""OpenAI's Responses API on the chat router: a request is translated into a ChatCall (so
limits, fallbacks, usage and budgets apply as on /v1/chat/completions), the answer and its
stream back into Responses objects and events.

Server-side state (`store`): with `store` true (OpenAI's default) the conversation of a response
(its input and output) and each output item are kept in Redis for LLM_RESPONSES_TTL_SECONDS
(env LLM_RESPONSES_TTL_SECONDS, a day unless set), so a follow-up can name
`previous_response_id` or send `item_reference` items (the AI SDK does for earlier assistant
text). With `store: false` nothing is kept and a follow-up must send its whole input, as
OpenAI's stateless mode asks. A stored response can be fetched back (`GET /v1/responses/{id}`)
and deleted (`DELETE`) for as long as it is kept.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from apps.llm import router as llm_router
from apps.llm.errors import openai_error
from apps.llm.providers import ChatResponse
from daarion.infra import sse
from daarion.infra.errors import BadRequest, DaarionError, NotFound
from daarion.infra import fast_json
from daarion.infra.redis_client import LuaScript, get_async_redis, key


def _ttl() -> int:
    return int(settings.LLM_RESPONSES_TTL_SECONDS)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, type=code, details={"param": param})


# --- request -> ChatCall -----------------------------------------------------------------


def _text_of_parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content: a string, or parts (input_text / output_text / input_image)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("content must be a string or a list of parts", where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"}})
        else:
            raise _bad(
                f"content part type {kind!r} is not supported here (input_text, output_text, input_image with image_url are)",
                f"{where}[{index}].type",
                "unsupported_value",
            )
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # content parts
        return "".join(str(p.get("text") or "") for p in output if isinstance(p, dict))
    return json.dumps(output)


def input_messages(items: list[dict[str, Any]], where: str = "input") -> list[dict[str, Any]]:
    """Responses input items as chat messages."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise _bad("each input item must be an object", at)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"role {role!r} is not one of user, assistant, system, developer", f"{at}.role")
            messages.append({"role": role, "content": _text_of_parts(item.get("content"), f"{at}.content")})
        elif kind == "function_call":
            if not item.get("call_id") or not item.get("name"):
                raise _bad("a function_call item needs call_id and name", at, "missing_required_parameter")
            call = {
                "id": str(item["call_id"]),
                "type": "function",
                "function": {"name": str(item["name"]), "arguments": str(item.get("arguments") or "{}")},
            }
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant":  # text and calls: one assistant turn
                previous.setdefault("tool_calls", []).append(call)
                if previous.get("content") == "":
                    previous["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not item.get("call_id"):
                raise _bad("a function_call_output item needs call_id", f"{at}.call_id", "missing_required_parameter")
            messages.append({"role": "tool", "tool_call_id": str(item["call_id"]), "content": _output_text(item.get("output"))})
        elif kind == "reasoning":
            continue  # the model's own earlier reasoning: chat upstreams take none back
        else:
            raise _bad(
                f"input item type {kind!r} is not supported (message, function_call, function_call_output, "
                "reasoning, item_reference are)",
                f"{at}.type",
                "unsupported_value",
            )
    return messages


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _bad(
                f"tool type {tool.get('type')!r} is not supported (function tools are)",
                f"tools[{index}].type",
                "unsupported_value",
            )
        if not tool.get("name"):
            raise _bad("a function tool needs a name", f"tools[{index}].name", "missing_required_parameter")
        function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice must be auto, none, required or {type: function, name}", "tool_choice", "unsupported_value")


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        if not fmt.get("name") or not isinstance(fmt.get("schema"), dict):
            raise _bad("a json_schema format needs name and schema", "text.format", "missing_required_parameter")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text.format type {fmt.get('type')!r} is not supported", "text.format.type", "unsupported_value")


# Responses parameters forwarded under their chat names; the rest of the request is read here.
_SAME_NAME = (
    "top_p",
    "parallel_tool_calls",
    "user",
    "metadata",
    "top_logprobs",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
)


async def chat_call(payload: Any) -> tuple[llm_router.ChatCall, list[dict[str, Any]]]:
    """(the routed call, the conversation so far as chat messages, for `store`)."""
    for name, asked, hint in (
        ("background", payload.background, "answer in the foreground"),
        ("conversation", payload.conversation, "use previous_response_id"),
        ("prompt", payload.prompt, "send the prompt's text as instructions"),
    ):
        if asked:
            raise _bad(f"{name} is not supported by this proxy; {hint}", name, "unsupported_parameter")
    history: list[dict[str, Any]] = []
    if payload.previous_response_id:
        history = await _load_conversation(payload.previous_response_id)
    if isinstance(payload.input, str):
        items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": payload.input}]
    else:
        items = await _resolve_references(payload.input)
    conversation = [*history, *input_messages(items)]
    if not conversation:
        raise _bad("input is empty", "input")
    # Instructions apply to this response only: never carried over by previous_response_id.
    messages = [{"role": "system", "content": payload.instructions}, *conversation] if payload.instructions else conversation
    params: dict[str, Any] = {}
    for name in _SAME_NAME:
        value = getattr(payload, name, None)
        if value is not None:
            params[name] = value
    if payload.max_output_tokens is not None:
        params["max_completion_tokens"] = payload.max_output_tokens
    if payload.reasoning and payload.reasoning.get("effort"):
        params["reasoning_effort"] = payload.reasoning["effort"]
    if payload.text and payload.text.get("verbosity"):
        params["verbosity"] = payload.text["verbosity"]
    for name, value in (payload.model_extra or {}).items():  # unknown keys pass through, as on chat
        if value is not None:
            params[name] = value
    call = llm_router.ChatCall(
        model=payload.model,
        messages=messages,
        temperature=payload.temperature,
        tools=_tools(payload.tools),
        tool_choice=_tool_choice(payload.tool_choice),
        response_format=_response_format(payload.text),
        params=params or None,
    )
    return call, conversation


# --- server-side state (store) -----------------------------------------------------------


_store_keys = LuaScript.load(__file__, "responses_store.lua")


def _conversation_key(response_id: str) -> str:
    return key("llm", "resp", response_id)


def _item_key(item_id: str) -> str:
    return key("llm", "resp-item", item_id)


def _object_key(response_id: str) -> str:
    return key("llm", "resp-obj", response_id)


async def _load_conversation(response_id: str) -> list[dict[str, Any]]:
    raw = await get_async_redis().get(_conversation_key(response_id))
    if raw is None:
        raise BadRequest(
            f"previous response {response_id!r} is not found (stored responses expire after "
            f"{_ttl()} s; store: false ones are never kept)",
            type="previous_response_not_found",
            details={"param": "previous_response_id"},
        )
    return json.loads(raw)


async def _resolve_references(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    refs = [item.get("id") for item in items if isinstance(item, dict) and item.get("type") == "item_reference"]
    if not refs:
        return items
    found = await get_async_redis().mget([_item_key(str(r)) for r in refs])
    by_id = dict(zip(refs, found))
    out = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            raw = by_id.get(item.get("id"))
            if raw is None:
                raise _bad(
                    f"item {item.get('id')!r} is not found (items of stored responses are kept "
                    f"{_ttl()} s; of store: false ones never)",
                    f"input[{index}].id",
                    "item_not_found",
                )
            out.append(json.loads(raw))
        else:
            out.append(item)
    return out


async def remember(response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
    """Keeps a stored response, its conversation and its output items for follow-ups, in one
    round trip (the answer waits for it, so a follow-up sent at once finds them)."""
    response_id, output = response["id"], response["output"]
    answer = input_messages([item for item in output if item["type"] in ("message", "function_call")], "output")
    keys = [_object_key(response_id), _conversation_key(response_id)]
    values = [fast_json.dumps(response), fast_json.dumps([*conversation, *answer])]
    for item in output:
        if item["type"] in ("message", "function_call"):
            keys.append(_item_key(item["id"]))
            values.append(fast_json.dumps(item))
    await _store_keys(get_async_redis(), keys, [_ttl(), *values])


def _not_found(response_id: str) -> NotFound:
    return NotFound(
        f"response {response_id!r} is not found (stored responses are kept {_ttl()} s; store: false ones never)",
        type="response_not_found",
        details={"param": "response_id"},
    )


async def stored(response_id: str) -> dict[str, Any]:
    raw = await get_async_redis().get(_object_key(response_id))
    if raw is None:
        raise _not_found(response_id)
    return json.loads(raw)


async def forget(response_id: str) -> None:
    response = await stored(response_id)
    items = [_item_key(item["id"]) for item in response["output"] if item.get("id")]
    await get_async_redis().delete(_object_key(response_id), _conversation_key(response_id), *items)


# --- answer -> Response ------------------------------------------------------------------


def usage_of(usage: Any) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        if text or status == "completed"
        else [],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}] if text else []}


def output_of(answer: ChatResponse) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if answer.reasoning:
        output.append(_reasoning_item(_id("rs"), answer.reasoning))
    if answer.content or not answer.tool_calls:
        output.append(_message_item(_id("msg"), answer.content))
    for call in answer.tool_calls:
        output.append(_call_item(_id("fc"), call.id, call.name, call.arguments))
    return output


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    payload: Any,
    response_id: str,
    created: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Any = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    incomplete = _INCOMPLETE.get(finish_reason) if status != "in_progress" else None
    if incomplete:
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": payload.instructions,
        "max_output_tokens": payload.max_output_tokens,
        "max_tool_calls": None,
        "model": payload.model,
        "output": output,
        "parallel_tool_calls": payload.parallel_tool_calls if payload.parallel_tool_calls is not None else True,
        "previous_response_id": payload.previous_response_id,
        "reasoning": {"effort": (payload.reasoning or {}).get("effort"), "summary": None},
        "service_tier": "default",
        "store": payload.store is not False,
        "temperature": payload.temperature,
        "text": payload.text or {"format": {"type": "text"}},
        "tool_choice": payload.tool_choice or "auto",
        "tools": payload.tools or [],
        "top_p": payload.top_p,
        "truncation": "disabled",
        "usage": usage_of(usage) if usage is not None else None,
        "user": payload.user,
        "metadata": payload.metadata or {},
    }


# --- the stream --------------------------------------------------------------------------


def _event(kind: str, sequence: int, data: dict[str, Any]) -> bytes:
    return sse.event({"type": kind, "sequence_number": sequence, **data}, name=kind)


async def events(
    routed: llm_router.Stream, payload: Any, response_id: str, created: int, conversation: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    """The Responses event sequence: response.created, in_progress, per output item its added /
    delta / done events, then response.completed (or incomplete, or an error and failed)."""
    sequence = 0
    output: list[dict[str, Any]] = []

    def emit(kind: str, data: dict[str, Any]) -> bytes:
        nonlocal sequence
        sequence += 1
        return _event(kind, sequence - 1, data)

    yield emit("response.created", {"response": response_object(payload, response_id, created, status="in_progress", output=[])})
    yield emit(
        "response.in_progress", {"response": response_object(payload, response_id, created, status="in_progress", output=[])}
    )
    open_kind: str | None = None  # "reasoning" or "message": the text-like item being written
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}  # upstream tool-call index -> its item (open ones)

    def close_open() -> list[bytes]:
        nonlocal open_kind
        out: list[bytes] = []
        if open_kind is None:
            return out
        index, item = len(output) - 1, output[-1]
        whole = "".join(text)
        if open_kind == "reasoning":
            part: dict[str, Any] = {"type": "summary_text", "text": whole}
            out.append(
                emit(
                    "response.reasoning_summary_text.done",
                    {"item_id": item["id"], "output_index": index, "summary_index": 0, "text": whole},
                )
            )
            out.append(
                emit(
                    "response.reasoning_summary_part.done",
                    {"item_id": item["id"], "output_index": index, "summary_index": 0, "part": part},
                )
            )
            output[index] = _reasoning_item(item["id"], whole)
        else:
            part = {"type": "output_text", "text": whole, "annotations": [], "logprobs": []}
            out.append(
                emit(
                    "response.output_text.done",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "text": whole, "logprobs": []},
                )
            )
            out.append(
                emit(
                    "response.content_part.done", {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part}
                )
            )
            output[index] = _message_item(item["id"], whole)
        out.append(emit("response.output_item.done", {"output_index": index, "item": output[index]}))
        open_kind, text[:] = None, []
        return out

    def open_item(kind: str) -> list[bytes]:
        nonlocal open_kind
        out = close_open()
        index = len(output)
        if kind == "reasoning":
            item = {"type": "reasoning", "id": _id("rs"), "summary": []}
            output.append(item)
            out.append(emit("response.output_item.added", {"output_index": index, "item": item}))
            out.append(
                emit(
                    "response.reasoning_summary_part.added",
                    {
                        "item_id": item["id"],
                        "output_index": index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    },
                )
            )
        else:
            item = _message_item(_id("msg"), "", "in_progress")
            output.append(item)
            out.append(emit("response.output_item.added", {"output_index": index, "item": item}))
            out.append(
                emit(
                    "response.content_part.added",
                    {
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                    },
                )
            )
        open_kind = kind
        return out

    try:
        async for event in routed.events():
            if event.kind in ("reasoning", "text"):
                kind = "reasoning" if event.kind == "reasoning" else "message"
                if open_kind != kind:
                    for chunk in open_item(kind):
                        yield chunk
                item, index = output[-1], len(output) - 1
                text.append(event.text)
                if kind == "reasoning":
                    yield emit(
                        "response.reasoning_summary_text.delta",
                        {"item_id": item["id"], "output_index": index, "summary_index": 0, "delta": event.text},
                    )
                else:
                    yield emit(
                        "response.output_text.delta",
                        {"item_id": item["id"], "output_index": index, "content_index": 0, "delta": event.text, "logprobs": []},
                    )
            elif event.kind == "tool_call":
                call = calls.get(event.index)
                if call is None:
                    for chunk in close_open():
                        yield chunk
                    item = _call_item(_id("fc"), event.id or _id("call"), event.name, "", "in_progress")
                    call = calls[event.index] = {"item": item, "output_index": len(output)}
                    output.append(item)
                    yield emit("response.output_item.added", {"output_index": call["output_index"], "item": dict(item)})
                if event.arguments:
                    call["item"]["arguments"] += event.arguments
                    yield emit(
                        "response.function_call_arguments.delta",
                        {"item_id": call["item"]["id"], "output_index": call["output_index"], "delta": event.arguments},
                    )
            elif event.kind == "finish":
                for chunk in close_open():
                    yield chunk
                for call in calls.values():
                    item = call["item"]
                    item["status"] = "completed"
                    yield emit(
                        "response.function_call_arguments.done",
                        {"item_id": item["id"], "output_index": call["output_index"], "arguments": item["arguments"]},
                    )
                    yield emit("response.output_item.done", {"output_index": call["output_index"], "item": item})
                if not output:  # an empty answer is still one (empty) message
                    for chunk in [*open_item("message"), *close_open()]:
                        yield chunk
                final = response_object(
                    payload,
                    response_id,
                    created,
                    status="completed",
                    output=output,
                    usage=routed.outcome.usage,
                    finish_reason=event.finish_reason or "stop",
                )
                if payload.store is not False:
                    await remember(final, conversation)
                yield emit("response.completed" if final["status"] == "completed" else "response.incomplete", {"response": final})
    except DaarionError as exc:
        error = openai_error(exc.status, exc.type, exc.message, exc.details)[1]["error"]
        yield emit("error", {"code": error["code"], "message": error["message"], "param": error["param"]})
        failed = response_object(payload, response_id, created, status="failed", output=output)
        failed["error"] = {"code": error["code"] or "server_error", "message": error["message"]}
        yield emit("response.failed", {"response": failed})


def now() -> int:
    return int(time.time())


def new_id() -> str:
    # Not the request id: a caller may reuse its x-request-id, and ids name stored conversations.
    return _id("resp")
