"""The real AI SDK client reads our agent stream: a Node script (apps/agents/tests/node)
uses the `ai` package pinned in package.json to validate every chunk and build the final
UIMessage, whose text and tool parts we check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "node" / "read_stream.mjs"
FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Node follow-up"}


@pytest.fixture(scope="module")
def node(repo_root) -> str:
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed")
    if not (repo_root / "node_modules" / "ai").is_dir():
        pytest.fail("node_modules/ai is missing: run `make test` (it runs npm ci) or `npm ci`")
    return binary


def _read(node: str, asgi_server, token: str, body: dict) -> dict:
    done = subprocess.run(
        [node, str(SCRIPT), asgi_server.url, token, "agent:sofia", json.dumps(body)],
        capture_output=True, text=True, timeout=120, cwd=SCRIPT.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ai_sdk_reads_text_and_tool_parts(node, asgi_server, agents_headers, make_token, sofia, llm_routes, scripted):
    model = llm_routes("node-chain")
    scripted.script(
        model,
        [{"text": "Checking.", "calls": [("followups__create", FOLLOWUP_ARGS), ("vault__read", {})]},
         {"text": "Your follow-up is in."}],
    )
    sofia(model)
    out = _read(node, asgi_server, make_token(scopes=["agents"]), {"message": "Create a follow-up"})
    assert out["status"] == 200 and out["errors"] == []
    assert out["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    message = out["message"]
    assert message["role"] == "assistant" and message["id"].startswith("run-")
    parts = message["parts"]
    assert [p["type"] for p in parts] == [
        "step-start", "text", "tool-followups.create", "tool-vault.read", "step-start", "text",
    ]
    assert parts[1]["text"].strip() == "Checking." and parts[5]["text"].strip() == "Your follow-up is in."
    done, refused = parts[2], parts[3]
    assert done["state"] == "output-available" and done["input"] == FOLLOWUP_ARGS
    assert done["output"]["title"] == "Node follow-up"
    assert refused["state"] == "output-error" and "tool_not_allowed" in refused["errorText"]
    metadata = message["metadata"]
    assert metadata["agent_id"] == "agent:sofia" and metadata["usage"]["total_tokens"] == 30
    assert metadata["stored_memory_id"] and metadata["session_id"].startswith("sess-")


def test_ai_sdk_sees_an_error_chunk(node, asgi_server, agents_headers, make_token, sofia, fake_llm, transactional_db):
    from apps.llm import services

    provider = services.provider_create(name="fake", kind="openai_compatible", base_url=fake_llm,
                                        api_key="sk-fake-key-123456", timeout_seconds=5.0, max_retries=0)
    services.deployment_create(logical_model=services.logical_model_create(name="node-broken"), provider=provider,
                               upstream_model="error:500")
    sofia("node-broken")
    out = _read(node, asgi_server, make_token(scopes=["agents"]), {"message": "hi"})
    assert out["status"] == 200
    assert out["errors"] and "upstream" in out["errors"][0]
