"""A fake OpenAI-compatible (and minimal Anthropic) upstream: a real HTTP server on 127.0.0.1.

    python -m testsupport.fake_llm --port 8999

The behaviour is chosen per request by the model name (`behaviour[:arg[:arg]]`):

    echo (or anything else)  answers "echo: <last user message>", streams when asked
    tools                    calls the first offered tool; after a tool result, answers with it
    error:<status>[:<retry_after>]  answers that status (429 with Retry-After when given)
    flaky:<n>:<key>          fails with 500 the first n calls of <key>, then answers
    slow:<seconds>           waits, then answers (streams: waits before the first chunk)
    hang                     never answers (until the client goes away)
    malformed                answers 200 with a body that is not JSON
    badstream                streams one good chunk, then garbage
    stall:<n>                streams n chunks, then stalls until the client goes away
    bad-request              answers 400 with an OpenAI-style error message
    keycheck                 answers 401 when the request's key contains "bad", else like echo
    leak[:<status>]          answers <status> (401) with an error message repeating the request's
                             credential headers (`authorization`, `x-api-key`), as a careless proxy does
    echokey                  answers 200 (or streams) "the key I got: <the request's credential header>"
    reasoning                answers like echo, with DeepSeek's `reasoning_content` ("thinking about: ...")
                             in the message or the stream deltas, and reasoning_tokens in usage

Chat answers honour `n` (that many choices) and `logprobs` (a logprobs object per choice).
A model starting with `thinking` on the Anthropic route answers with a thinking block first.
`POST /embeddings` answers deterministic vectors of `dimensions` (default 8) numbers, for
strings or token-id lists alike.

It records: `GET /_stats` has `bodies`, the last 100 requests as received (path and JSON body),
so tests assert what arrived upstream parameter by parameter.

`GET /_stats` also reports
counts of requests per model, disconnects seen, the last request's headers and body, and
`auth`: per request (the last 200) its path, model and credential headers (`authorization`,
`x-api-key`), to tell which key each call carried; `POST /_reset` clears them. Usage counts words, like the stub provider.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

STATS: dict[str, Any] = {
    "requests": Counter(),
    "disconnects": 0,
    "last": None,
    "flaky": Counter(),
    "active": 0,
    "auth": [],
    "bodies": [],
}


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text or ""))


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _send_json(send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *(headers or [])]}
    )
    await send({"type": "http.response.body", "body": raw})


async def _wait_disconnect(receive, timeout: float = 120.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    STATS["disconnects"] += 1
                    return
    except TimeoutError:
        return


def _reasoning_of(body: dict[str, Any]) -> str:
    return (
        f"thinking about: {_last_user(body.get('messages') or [])}" if str(body.get("model", "")).startswith("reasoning") else ""
    )


def _logprobs(content: str) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in re.findall(r"\S+\s*", content)
        ]
    }


def _completion(body: dict[str, Any], content: str, tool_calls: list[dict] | None, prompt: int) -> dict[str, Any]:
    model = str(body.get("model", ""))
    reasoning = _reasoning_of(body)
    choices = []
    for index in range(int(body.get("n") or 1)):
        text = content if index == 0 else f"{content} (choice {index})"
        message: dict[str, Any] = {"role": "assistant", "content": text if not tool_calls else None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if reasoning:
            message["reasoning_content"] = reasoning
        choice = {"index": index, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        if body.get("logprobs"):
            choice["logprobs"] = _logprobs(text)
        choices.append(choice)
    completion = _words(content) + (5 if tool_calls else 0) + _words(reasoning)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": _words(reasoning)}
    return {
        "id": f"chatcmpl-{hashlib.sha1(content.encode()).hexdigest()[:10]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _answer(body: dict[str, Any]) -> tuple[str, list[dict] | None]:
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    if model.startswith("tools"):
        if messages and messages[-1].get("role") == "tool":
            return f"tool said: {messages[-1].get('content')}", None
        tools = body.get("tools") or []
        if tools:
            name = tools[0]["function"]["name"]
            return "", [{"id": "call_fake_1", "type": "function", "function": {"name": name, "arguments": '{"limit": 3}'}}]
    return f"echo: {_last_user(messages)}", None


def _credential(scope) -> str:
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    return headers.get("authorization") or headers.get("x-api-key") or ""


def _leaked(scope) -> str:
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    return f"invalid credentials: authorization={headers.get('authorization')!r} x-api-key={headers.get('x-api-key')!r}"


async def _chat(scope, receive, send, body: dict[str, Any]) -> None:
    model = str(body.get("model", ""))
    behaviour, *args = model.split(":")
    STATS["requests"][model] += 1
    messages = body.get("messages") or []
    prompt = sum(_words(m.get("content") if isinstance(m.get("content"), str) else "") + 1 for m in messages)
    if behaviour == "error":
        status = int(args[0]) if args else 500
        headers = [(b"retry-after", args[1].encode())] if len(args) > 1 else []
        await _send_json(send, status, {"error": {"message": f"fake upstream error {status}", "type": "fake"}}, headers)
        return
    if behaviour == "keycheck" and "bad" in _credential(scope):
        await _send_json(send, 401, {"error": {"message": "fake: invalid api key", "type": "invalid_request_error"}})
        return
    if behaviour == "leak":
        await _send_json(send, int(args[0]) if args else 401, {"error": {"message": _leaked(scope), "type": "fake"}})
        return
    if behaviour == "bad-request":
        await _send_json(
            send, 400, {"error": {"message": "fake: messages[0].content is too long", "type": "invalid_request_error"}}
        )
        return
    if behaviour == "flaky":
        failures, flaky_key = int(args[0]), args[1] if len(args) > 1 else "default"
        STATS["flaky"][flaky_key] += 1
        if STATS["flaky"][flaky_key] <= failures:
            await _send_json(send, 500, {"error": {"message": "fake flaky failure"}})
            return
    if behaviour == "hang":
        await _wait_disconnect(receive)
        return
    if behaviour == "malformed":
        await _send_json(send, 200, b"{not json")
        return
    if behaviour == "slow":
        await asyncio.sleep(float(args[0]) if args else 1.0)
    content, tool_calls = _answer(body)
    if behaviour == "echokey":
        content = f"the key I got: {_credential(scope)}"
    if not body.get("stream"):
        await _send_json(send, 200, _completion(body, content, tool_calls, prompt))
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )

    async def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> None:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            payload["usage"] = usage
        await send({"type": "http.response.body", "body": f"data: {json.dumps(payload)}\n\n".encode(), "more_body": True})

    pieces = re.findall(r"\S+\s*", content)
    if behaviour == "stall":
        count = int(args[0]) if args else 1
        for piece in (pieces * 10)[:count]:
            await chunk({"content": piece})
        await _wait_disconnect(receive)
        return
    await chunk({"role": "assistant", "content": ""})
    reasoning = _reasoning_of(body)
    for piece in re.findall(r"\S+\s*", reasoning):
        await chunk({"reasoning_content": piece, "content": None})
    if behaviour == "badstream":
        await chunk({"content": pieces[0] if pieces else "x"})
        await send({"type": "http.response.body", "body": b"data: {garbage\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    for call_index, call in enumerate(tool_calls or []):
        await chunk(
            {
                "tool_calls": [
                    {
                        "index": call_index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        await chunk({"tool_calls": [{"index": call_index, "function": {"arguments": call["function"]["arguments"]}}]})
    for piece in pieces:
        await chunk({"content": piece})
    await chunk({}, "tool_calls" if tool_calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        completion = _words(content) + (5 if tool_calls else 0) + _words(reasoning)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": _words(reasoning)}
        await chunk({}, usage=usage)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _vector(text: str, dims: int = 8) -> list[float]:
    # sha256 for the first 32 numbers, as always; longer vectors ask for more bytes.
    digest = hashlib.sha256(text.encode()).digest()[:dims] if dims <= 32 else hashlib.shake_256(text.encode()).digest(dims)
    raw = [(b - 128) / 128 for b in digest]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


async def _messages(scope, receive, send, body: dict[str, Any]) -> None:
    """A minimal Anthropic Messages API, enough to exercise the adapter."""
    model = str(body.get("model", ""))
    STATS["requests"][model] += 1
    if model.startswith("leak"):
        status = int(model.split(":")[1]) if ":" in model else 401
        await _send_json(send, status, {"type": "error", "error": {"type": "authentication_error", "message": _leaked(scope)}})
        return
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    blocks = last.get("content") if isinstance(last.get("content"), list) else [{"type": "text", "text": last.get("content", "")}]
    tool_results = [b for b in blocks if b.get("type") == "tool_result"]
    text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    content: list[dict[str, Any]]
    if tool_results:
        content, stop = [{"type": "text", "text": f"tool said: {tool_results[0].get('content')}"}], "end_turn"
    elif body.get("tools"):
        content = [{"type": "tool_use", "id": "toolu_fake", "name": body["tools"][0]["name"], "input": {"limit": 3}}]
        stop = "tool_use"
    else:
        content, stop = (
            [{"type": "text", "text": f"echo: {text}" + (f" (system: {body['system']})" if body.get("system") else "")}],
            "end_turn",
        )
    if model.startswith("thinking"):
        content = [{"type": "thinking", "thinking": f"thinking about: {text}", "signature": "sig"}, *content]
    usage = {"input_tokens": 11, "output_tokens": 7}
    if not body.get("stream"):
        await _send_json(
            send,
            200,
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "usage": usage,
            },
        )
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    async def event(name: str, data: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.body",
                "body": f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode(),
                "more_body": True,
            }
        )

    await event("message_start", {"message": {"id": "msg_fake", "usage": {"input_tokens": 11, "output_tokens": 1}}})
    for index, block in enumerate(content):
        if block["type"] == "text":
            await event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            for piece in re.findall(r"\S+\s*", block["text"]):
                await event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
        elif block["type"] == "thinking":
            await event("content_block_start", {"index": index, "content_block": {"type": "thinking", "thinking": ""}})
            await event(
                "content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": block["thinking"]}}
            )
        else:
            await event(
                "content_block_start",
                {"index": index, "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}},
            )
            await event(
                "content_block_delta",
                {"index": index, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
            )
        await event("content_block_stop", {"index": index})
    await event("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 7}})
    await event("message_stop", {})
    await send({"type": "http.response.body", "body": b""})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    if path == "/_stats":
        await _send_json(send, 200, {**STATS, "requests": dict(STATS["requests"]), "flaky": dict(STATS["flaky"])})
        return
    if path == "/_reset":
        STATS.update(
            {"requests": Counter(), "disconnects": 0, "last": None, "flaky": Counter(), "active": 0, "auth": [], "bodies": []}
        )
        await _send_json(send, 200, {"ok": True})
        return
    if path == "/health":
        await _send_json(send, 200, {"ok": True})
        return
    raw = await _read_body(receive)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        await _send_json(send, 400, {"error": {"message": "fake: body is not JSON"}})
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    STATS["last"] = {"path": path, "headers": headers, "body": body}
    STATS["bodies"] = [*STATS["bodies"][-99:], {"path": path, "body": body}]
    STATS["auth"] = [
        *STATS["auth"][-199:],
        {
            "path": path,
            "model": str(body.get("model", "")) if isinstance(body, dict) else "",
            "authorization": headers.get("authorization"),
            "x-api-key": headers.get("x-api-key"),
        },
    ]
    STATS["active"] += 1
    try:
        if method == "POST" and path.endswith("/chat/completions"):
            await _chat(scope, receive, send, body)
        elif method == "POST" and path.endswith("/messages"):
            await _messages(scope, receive, send, body)
        elif method == "POST" and path.endswith("/embeddings"):
            inputs = body.get("input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
                inputs = [inputs]
            inputs = [t if isinstance(t, str) else " ".join(map(str, t)) for t in inputs or []]
            dims = int(body.get("dimensions") or 8)
            STATS["requests"][str(body.get("model"))] += 1
            if str(body.get("model", "")).startswith("error"):
                await _send_json(send, 500, {"error": {"message": "fake embeddings failure"}})
                return
            tokens = sum(_words(t) for t in inputs)
            await _send_json(
                send,
                200,
                {
                    "object": "list",
                    "model": body.get("model"),
                    "data": [{"object": "embedding", "index": i, "embedding": _vector(t, dims)} for i, t in enumerate(inputs)],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        else:
            await _send_json(send, 404, {"error": {"message": f"fake: no route {method} {path}"}})
    finally:
        STATS["active"] -= 1


def serve(port: int, host: str = "127.0.0.1") -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


def start_subprocess(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Starts the server in its own process and waits until it answers; returns (process, base URL)."""
    import httpx

    if port is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "testsupport.fake_llm", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("fake LLM server exited early")
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("fake LLM server did not start in 30 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args()
    serve(options.port, options.host)
