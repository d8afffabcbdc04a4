"""@ai-sdk/openai's default model, `openai(id)` (the Responses API), against our /v1:
generateText, and streamText with a tool loop the SDK runs itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "node" / "openai_provider.mjs"


@pytest.fixture(scope="module")
def node(repo_root) -> str:
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed")
    if not (repo_root / "node_modules" / "@ai-sdk" / "openai").is_dir():
        pytest.fail("node_modules/@ai-sdk/openai is missing: run `make test` (it runs npm ci) or `npm ci`")
    return binary


def test_generate_text_and_a_streamed_tool_loop(node, api, stub_model, make_token, live):
    live()
    done = subprocess.run(
        [node, str(SCRIPT), str(api.base_url).rstrip("/"), make_token(scopes=["llm"]), "dagi-stub"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    generated = out["generated"]
    assert generated["text"] == "[stub] You said: hello from the ai sdk"
    assert generated["finishReason"] == "stop" and generated["usage"]["totalTokens"] > 0
    assert generated["responseId"].startswith("resp_")
    assert generated["followUp"] == "[stub] You said: and once more"
    body = generated["followUpBody"] if isinstance(generated["followUpBody"], dict) else json.loads(generated["followUpBody"])
    assert {"type": "item_reference", "id": body["input"][1]["id"]} == body["input"][1], "the history came by reference"
    streamed = out["streamed"]
    assert streamed["errors"] == []
    assert streamed["steps"] == [
        {"finishReason": "tool-calls", "toolCalls": ["projects_list"]},
        {"finishReason": "stop", "toolCalls": []},
    ]
    assert streamed["toolExecutions"] == [{}]
    assert streamed["finalText"] == "[stub] Based on the tool result: Roadmap, Treasury"
    assert streamed["text"] == streamed["finalText"]
