"""The real AI SDK reads /internal/llm/stream: a Node script validates every chunk with the
SDK's uiMessageChunkSchema and builds the final UIMessage (text, tool parts, metadata)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "node" / "read_llm_stream.mjs"
PROJECT_TOOL = {"type": "function", "function": {"name": "projects.list", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def node(repo_root) -> str:
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed")
    if not (repo_root / "node_modules" / "ai").is_dir():
        pytest.fail("node_modules/ai is missing: run `make test` (it runs npm ci) or `npm ci`")
    return binary


def _read(node: str, base_url: str, token: str, body: dict) -> dict:
    done = subprocess.run(
        [node, str(SCRIPT), base_url, token, json.dumps(body)], capture_output=True, text=True, timeout=120, cwd=SCRIPT.parent
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ai_sdk_reads_text_and_usage_metadata(node, api, stub_model, make_token, live):
    live()
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hello sdk"}], "request_id": "req-node-1"}
    out = _read(node, str(api.base_url).rstrip("/"), make_token(scopes=["llm"]), body)
    assert out["status"] == 200 and out["errors"] == []
    assert out["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    message = out["message"]
    assert message["id"] == "req-node-1"
    assert [p["type"] for p in message["parts"]] == ["step-start", "text"]
    assert message["parts"][1]["text"] == "[stub] You said: hello sdk"
    assert message["metadata"]["usage"]["total_tokens"] > 0
    assert message["metadata"]["model_resolved"] == "dagi-stub"


def test_ai_sdk_reads_a_tool_call(node, api, stub_model, make_token, live):
    live()
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "my projects?"}], "tools": [PROJECT_TOOL]}
    out = _read(node, str(api.base_url).rstrip("/"), make_token(scopes=["llm"]), body)
    assert out["errors"] == []
    tool = out["message"]["parts"][1]
    assert tool["type"] == "tool-projects.list"
    assert tool["state"] == "input-available" and tool["input"] == {}


def test_ai_sdk_sees_an_error_chunk(node, api, fake_provider, make_model, make_token, live):
    make_model("broken", fake_provider, "error:500")
    live()
    out = _read(
        node,
        str(api.base_url).rstrip("/"),
        make_token(scopes=["llm"]),
        {"model": "broken", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert out["status"] == 200
    assert out["errors"] and "upstream_error" in out["errors"][0]


def test_ai_sdk_reads_reasoning_parts(node, api, fake_provider, make_model, make_token, live):
    # DeepSeek-style reasoning_content arrives as reasoning-start / -delta / -end parts.
    make_model("thinker", fake_provider, "reasoning")
    live()
    out = _read(
        node,
        str(api.base_url).rstrip("/"),
        make_token(scopes=["llm"]),
        {"model": "thinker", "messages": [{"role": "user", "content": "ponder"}]},
    )
    assert out["errors"] == []
    parts = out["message"]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["text"] == "thinking about: ponder" and parts[1]["state"] == "done"
    assert parts[2]["text"] == "echo: ponder"
