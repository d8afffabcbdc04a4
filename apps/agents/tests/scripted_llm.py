"""A scripted OpenAI-compatible upstream for the agent tests: a real HTTP server on 127.0.0.1
in a thread of the test process, so a test can say exactly which tool calls the "model"
makes at each step and then read what the pipeline sent it back.

    scripted.script("script-a", [{"calls": [("followups_create", {...})]}, {"text": "done"}])

The step is the number of assistant messages after the turn's user message (earlier turns of
the session may come before it), so step 0 answers the user's message, step 1 answers after
the first tool results, and so on (the last entry repeats); `"delay": seconds` makes a step
slow, `"word_delay": seconds` streams its words that far apart. Answers are streamed as OpenAI chunks when `stream` is set, with usage at the end.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLM:
    def __init__(self) -> None:
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}  # model -> each request's headers
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="scripted-llm")
        self.thread.start()

    def script(self, model: str, steps: list[dict[str, Any]]) -> None:
        with self._lock:
            self.scripts[model] = steps
            self.requests[model] = []

    def seen_headers(self, model: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self.headers.get(model, []))

    def seen(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests.get(model, []))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model", ""))
        with self._lock:
            self.requests.setdefault(model, []).append(body)
            steps = self.scripts.get(model) or [{"text": f"unscripted model {model}"}]
        step = 0
        for m in body.get("messages") or []:
            content = m.get("content")
            if m.get("role") == "assistant":
                step += 1
            elif m.get("role") == "user" and isinstance(content, str) and not content.startswith(("TOOL RESULT", "TOOL ERROR")):
                step = 0  # a new turn (earlier turns of the session come before it as history)
        return steps[min(step, len(steps) - 1)]

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.headers.setdefault(str(body.get("model", "")), []).append(
                        {k.lower(): v for k, v in self.headers.items()}
                    )
                answer = outer._answer(body)
                if answer.get("delay"):
                    time.sleep(float(answer["delay"]))  # a slow model: the stream must keep alive
                calls = [
                    {
                        "id": f"call_{i}_{name}",
                        "type": "function",
                        "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
                    }
                    for i, (name, args) in enumerate(answer.get("calls") or [])
                ]
                text = answer.get("text", "")
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                finish = "tool_calls" if calls else "stop"
                if not body.get("stream"):
                    message = {"role": "assistant", "content": text or None}
                    if calls:
                        message["tool_calls"] = calls
                    self._json(
                        {
                            "id": "cmpl-1",
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                            "usage": usage,
                        }
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks: list[dict[str, Any]] = []
                for word in text.split(" ") if text else []:
                    chunks.append({"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]})
                for index, call in enumerate(calls):
                    chunks.append(
                        {"choices": [{"index": 0, "delta": {"tool_calls": [{**call, "index": index}]}, "finish_reason": None}]}
                    )
                chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                chunks.append({"choices": [], "usage": usage})
                for n, chunk in enumerate(chunks):
                    if n and answer.get("word_delay"):
                        time.sleep(float(answer["word_delay"]))  # a model that streams slowly
                    payload = {"id": "cmpl-1", "object": "chat.completion.chunk", "model": body.get("model"), **chunk}
                    self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _json(self, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler
