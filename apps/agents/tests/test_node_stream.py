"""The real AI SDK client reads our agent stream: Node scripts (apps/agents/tests/node) use
the `ai` package pinned in package.json to validate every chunk and build the final
UIMessage, whose text and tool parts we check; one drives DefaultChatTransport through a
hang-up and `reconnectToStream`, as `useChat({resume: true})` does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "node" / "read_stream.mjs"
RESUME_SCRIPT = SCRIPT.parent / "resume_chat.mjs"
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
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ai_sdk_reads_text_and_tool_parts(node, asgi_server, agents_headers, make_token, sofia, llm_routes, scripted):
    model = llm_routes("node-chain")
    scripted.script(
        model,
        [
            {"text": "Checking.", "calls": [("followups__create", FOLLOWUP_ARGS), ("vault__read", {})]},
            {"text": "Your follow-up is in."},
        ],
    )
    sofia(model)
    out = _read(node, asgi_server, make_token(scopes=["agents"]), {"message": "Create a follow-up"})
    assert out["status"] == 200 and out["errors"] == []
    assert out["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    message = out["message"]
    assert message["role"] == "assistant" and message["id"].startswith("run-")
    parts = message["parts"]
    assert [p["type"] for p in parts] == [
        "step-start",
        "text",
        "tool-followups.create",
        "tool-vault.read",
        "step-start",
        "text",
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

    provider = services.provider_create(
        name="fake", kind="openai_compatible", base_url=fake_llm, api_key="sk-fake-key-123456", timeout_seconds=5.0, max_retries=0
    )
    services.deployment_create(
        logical_model=services.logical_model_create(name="node-broken"), provider=provider, upstream_model="error:500"
    )
    sofia("node-broken")
    out = _read(node, asgi_server, make_token(scopes=["agents"]), {"message": "hi"})
    assert out["status"] == 200
    assert out["errors"] and "upstream" in out["errors"][0]


def test_default_chat_transport_resumes_a_run_after_a_hang_up(
    node, asgi_server, agents_headers, make_token, sofia, llm_routes, scripted
):
    from apps.agents.models import Run
    from apps.agents.tests.conftest import wait_until
    from apps.memory.models import MemoryEntry, Transcript
    from apps.demo.models import Followup

    slow = "Your follow-up is in, with the notes attached for everyone"
    model = llm_routes("node-resume")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": slow, "word_delay": 0.2}])
    sofia(model)
    done = subprocess.run(
        [
            node,
            str(RESUME_SCRIPT),
            asgi_server.url,
            make_token(scopes=["agents"]),
            "agent:sofia",
            "chat-node-1",
            "Create a follow-up",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == []
    assert out["before"][-1] == "text-delta" and "finish" not in out["before"]  # it hung up mid-answer
    message = out["message"]
    assert [p["type"] for p in message["parts"]] == ["step-start", "tool-followups.create", "step-start", "text"]
    tool, text = message["parts"][1], message["parts"][3]
    assert tool["state"] == "output-available" and tool["output"]["title"] == "Node follow-up"
    assert text["text"].strip() == slow
    run_id = message["id"]
    wait_until(lambda: Run.objects.get(pk=run_id).status != "running", "the run to end")
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.session_id == "chat-node-1"
    assert MemoryEntry.objects.filter(meta__turn_id=run_id).count() == 1
    assert [e["type"] for e in Transcript.objects.get(session_id="chat-node-1").entries] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert Followup.objects.count() == 1
