"""The agent turn end-to-end over real HTTP: memory -> LLM gateway -> toolcore -> LLM ->
memory, with a scripted upstream model (and the shared fake upstream) issuing tool calls.
"""

from __future__ import annotations

import json

import pytest

from apps.agents.tests.sse import assert_protocol, parse_sse
from apps.memory.models import MemoryEntry, Transcript
from apps.demo.models import Followup

CHAT = "/internal/agents/agent:sofia/chat"
FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Send the meeting notes"}


def _chat(api, headers, **body):
    body.setdefault("microdao_id", "microdao:7")
    body.setdefault("channel_id", "channel:general")
    return api.post(CHAT, headers=headers, json=body, timeout=60)


def _tool_messages(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


def test_the_chain_calls_a_tool_and_answers_with_its_result(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-chain")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Done: follow-up created."}])
    sofia(model)
    response = _chat(api, agents_headers, message="Please create a follow-up for the notes", user_id="user:ann")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "Done: follow-up created."
    [call] = body["tool_calls"]
    assert (call["tool_id"], call["function_name"], call["ok"], call["step"]) == (
        "followups.create",
        "followups__create",
        True,
        0,
    )
    assert call["arguments"] == FOLLOWUP_ARGS and call["result"]["title"] == "Send the meeting notes"
    assert [s["step"] for s in body["steps"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    assert body["session_id"].startswith("sess-") and body["stored_memory_id"]
    assert Followup.objects.get().agent_id == "agent:sofia"

    first, second = scripted.seen(model)
    assert [t["function"]["name"] for t in first["tools"]] == ["broken__fetch", "followups__create"]
    system = first["messages"][0]["content"]
    assert "You are Sofia-Prime." in system and "microDAO: microdao:7" in system and "precise, warm" in system
    [result] = _tool_messages(second)
    assert json.loads(result["content"])["title"] == "Send the meeting notes"


def test_a_forbidden_tool_is_refused_and_the_model_is_told(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-forbidden")
    scripted.script(model, [{"calls": [("vault__read", FOLLOWUP_ARGS)]}, {"text": "I may not read the vault."}])
    sofia(model)
    response = _chat(api, agents_headers, message="Read the vault")
    assert response.status_code == 200, response.text
    body = response.json()
    [call] = body["tool_calls"]
    assert (call["tool_id"], call["ok"], call["error_type"]) == ("vault.read", False, "tool_not_allowed")
    assert body["reply"] == "I may not read the vault."
    [told] = _tool_messages(scripted.seen(model)[1])
    assert json.loads(told["content"])["error_type"] == "tool_not_allowed"
    assert not Followup.objects.exists()


def test_a_failing_tool_does_not_break_the_turn(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-failing")
    scripted.script(
        model,
        [
            {"calls": [("broken__fetch", {}), ("followups__create", FOLLOWUP_ARGS), ("no_such_tool", {})]},
            {"text": "One of three worked."},
        ],
    )
    sofia(model)
    body = _chat(api, agents_headers, message="Do three things").json()
    by_tool = {c["tool_id"]: c for c in body["tool_calls"]}
    assert by_tool["broken.fetch"]["ok"] is False and by_tool["broken.fetch"]["error"]
    assert by_tool["followups.create"]["ok"] is True
    assert by_tool["no_such_tool"]["error_type"] == "tool_not_found"
    assert body["reply"] == "One of three worked."
    assert len(_tool_messages(scripted.seen(model)[1])) == 3


def test_bad_tool_arguments_are_reported_to_the_model(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-badargs")
    scripted.script(
        model, [{"calls": [("followups__create", "{not json"), ("followups__create", {"title": ""})]}, {"text": "Sorry."}]
    )
    sofia(model)
    body = _chat(api, agents_headers, message="Create it").json()
    assert [c["error_type"] for c in body["tool_calls"]] == ["invalid_args", "invalid_args"]
    assert "not valid JSON" in body["tool_calls"][0]["error"]
    assert body["reply"] == "Sorry."


def test_the_step_limit_forces_an_answer(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-loop")
    scripted.script(model, [{"text": "Again.", "calls": [("followups__create", FOLLOWUP_ARGS)]}])
    sofia(model, max_tool_steps=1)
    body = _chat(api, agents_headers, message="Loop forever").json()
    assert [c["ok"] for c in body["tool_calls"]] == [True, False]
    # The scripted upstream reuses call ids across responses; the turn keeps them apart.
    assert len({c["id"] for c in body["tool_calls"]}) == 2
    assert body["reply"] == "Again.\n\nAgain."
    assert body["tool_calls"][1]["error_type"] == "tool_steps_exhausted"
    first, last = scripted.seen(model)
    assert first.get("tools") and not last.get("tools")
    assert Followup.objects.count() == 1


def test_memory_and_transcript_are_written_once_per_turn(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-memory")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Noted the zebra budget."}])
    sofia(model)
    first = _chat(api, agents_headers, message="Remember the zebra budget", session_id="sess-agents-1").json()
    entries = list(MemoryEntry.objects.filter(agent_id="agent:sofia"))
    assert len(entries) == 1
    [entry] = entries
    assert entry.kind == "conversation" and str(entry.id) == first["stored_memory_id"]
    assert entry.content["user_message"] == "Remember the zebra budget"
    assert entry.content["agent_reply"] == "Noted the zebra budget."
    assert entry.channel_id == "channel:general" and entry.microdao_id == "microdao:7"
    transcript = Transcript.objects.get(session_id="sess-agents-1")
    assert [e["type"] for e in transcript.entries] == ["user", "assistant", "user", "assistant"]
    assert transcript.entries[1]["message"]["content"][0]["type"] == "tool_use"
    parents = [e["parentUuid"] for e in transcript.entries]
    assert parents == [None, *[e["uuid"] for e in transcript.entries[:-1]]]

    scripted.script(model, [{"text": "Yes, the zebra budget."}])
    second = _chat(api, agents_headers, message="What about the zebra budget?", session_id="sess-agents-1").json()
    assert first["stored_memory_id"] in second["memory_ids"]
    assert "Noted the zebra budget." in scripted.seen(model)[0]["messages"][0]["content"]
    assert MemoryEntry.objects.filter(agent_id="agent:sofia").count() == 2
    transcript.refresh_from_db()
    assert len(transcript.entries) == 6
    assert transcript.entries[4]["parentUuid"] == transcript.entries[3]["uuid"]


def test_context_messages_reach_the_model(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-context")
    scripted.script(model, [{"text": "ok"}])
    sofia(model, memory_recall_limit=0)
    body = _chat(
        api,
        agents_headers,
        message="Summarise",
        context=[
            {"author": "ann", "content": "The release slipped a week."},
            {"role": "assistant", "content": "Noted."},
        ],
    ).json()
    assert body["memory_ids"] == []
    system = scripted.seen(model)[0]["messages"][0]["content"]
    assert "ann: The release slipped a week." in system and "assistant: Noted." in system


def test_text_convention_for_models_without_tool_calling(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-text")
    line = "TOOL: followups.create " + json.dumps(FOLLOWUP_ARGS)
    scripted.script(model, [{"text": f"Let me do that.\n{line}"}, {"text": "Created."}])
    sofia(model, tool_mode="text")
    body = _chat(api, agents_headers, message="Create the follow-up").json()
    [call] = body["tool_calls"]
    assert call["tool_id"] == "followups.create" and call["ok"] is True
    assert body["reply"] == "Let me do that.\n\nCreated."
    first, second = scripted.seen(model)
    assert "tools" not in first and "TOOL: <tool id>" in first["messages"][0]["content"]
    assert second["messages"][-1]["content"].startswith("TOOL RESULT followups.create:")


def test_streamed_turn_speaks_the_ui_message_stream(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("script-stream")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS), ("vault__read", {})]}, {"text": "All done here."}])
    sofia(model)
    response = _chat(api, agents_headers, message="Create it", stream=True)
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks, _, done = parse_sse(response.text)
    assert done
    assert_protocol(chunks)
    types = [c["type"] for c in chunks]
    assert types == [
        "start",
        "message-metadata",
        "start-step",
        "tool-input-start",
        "tool-input-available",
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
        "tool-output-error",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert text.strip() == "All done here."
    assert chunks[3]["toolName"] == "followups.create" and chunks[4]["input"] == FOLLOWUP_ARGS
    assert "tool_not_allowed" in chunks[8]["errorText"]
    finish = chunks[-1]["messageMetadata"]
    assert finish["usage"]["total_tokens"] == 30 and finish["stored_memory_id"]
    assert chunks[0]["messageMetadata"]["session_id"].startswith("sess-")
    assert MemoryEntry.objects.filter(agent_id="agent:sofia").count() == 1


def test_an_upstream_failure_is_an_error_chunk_in_a_stream_and_an_envelope_without(
    api, agents_headers, sofia, fake_llm, transactional_db
):
    from apps.llm import services

    provider = services.provider_create(
        name="fake", kind="openai_compatible", base_url=fake_llm, api_key="sk-fake-key-123456", timeout_seconds=5.0, max_retries=0
    )
    services.deployment_create(
        logical_model=services.logical_model_create(name="broken-model"), provider=provider, upstream_model="error:500"
    )
    sofia("broken-model")
    response = _chat(api, agents_headers, message="hello", stream=True)
    assert response.status_code == 200
    chunks, _, done = parse_sse(response.text)
    assert done and chunks[-1]["type"] == "error" and chunks[-1]["errorText"]
    assert_protocol(chunks)
    plain = _chat(api, agents_headers, message="hello")
    assert plain.status_code == 502, plain.text
    assert plain.json()["error"]["type"].startswith("upstream")
    assert not MemoryEntry.objects.exists()


def test_the_shared_fake_upstream_drives_a_tool_call(api, agents_headers, sofia, fake_llm, transactional_db):
    from apps.llm import services

    provider = services.provider_create(
        name="fake", kind="openai_compatible", base_url=fake_llm, api_key="sk-fake-key-123456", timeout_seconds=5.0, max_retries=0
    )
    services.deployment_create(
        logical_model=services.logical_model_create(name="fake-tools"), provider=provider, upstream_model="tools"
    )
    sofia("fake-tools")
    body = _chat(api, agents_headers, message="go").json()
    # The fake calls the first offered tool (broken.fetch, refused by toolcore's host rules)
    # and then answers with what the tool message said.
    [call] = body["tool_calls"]
    assert call["tool_id"] == "broken.fetch" and call["ok"] is False
    assert body["reply"].startswith("tool said:") and call["error_type"] in body["reply"]


@pytest.mark.parametrize(
    "body, path",
    [
        ({}, "body.message"),
        ({"message": ""}, "body.message"),
        ({"message": "hi", "session_id": "../etc"}, "body.session_id"),
        ({"message": "hi", "context": [{"content": "x", "role": "robot"}]}, "body.context.0.role"),
        ({"message": "hi", "stream": "maybe"}, "body.stream"),
    ],
)
def test_bad_chat_bodies_are_422(api, agents_headers, sofia, llm_routes, body, path):
    sofia(llm_routes("script-unused"))
    response = api.post(CHAT, headers=agents_headers, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error" and path in [d["path"] for d in error["details"]]


def test_chat_refusals(api, agents_headers, sofia, llm_routes, make_token, bearer, scripted):
    model = llm_routes("script-refusals")
    scripted.script(model, [{"text": "hi"}])
    unknown = api.post("/internal/agents/agent:nobody/chat", headers=agents_headers, json={"message": "hi"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "agent_not_found"

    sofia(model)
    assert api.post("/internal/agents/agent:sofia/unload", headers=agents_headers).status_code == 200
    not_loaded = _chat(api, agents_headers, message="hi")
    assert not_loaded.status_code == 409 and not_loaded.json()["error"]["type"] == "agent_not_loaded"
    assert api.post("/internal/agents/agent:sofia/load", headers=agents_headers).status_code == 200
    assert _chat(api, agents_headers, message="hi").status_code == 200

    bound = bearer(make_token(scopes=["agents"], agents=["agent:other"]))
    refused = _chat(api, bound, message="hi")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "agent_not_allowed"
    assert _chat(api, bearer(make_token(scopes=["agents"], agents=["agent:sofia"])), message="hi").status_code == 200

    from apps.memory.services import transcript_put

    transcript_put(
        session_id="sess-of-other",
        agent_id="agent:other",
        entries=[
            {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "x"}},
            {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "message": {"role": "assistant", "content": "y"}},
        ],
    )
    mismatch = _chat(api, agents_headers, message="hi", session_id="sess-of-other")
    assert mismatch.status_code == 409 and mismatch.json()["error"]["type"] == "session_agent_mismatch"


def test_a_client_going_away_leaves_the_run_going_and_remembered_once(
    api, asgi_server, agents_headers, sofia, llm_routes, scripted
):
    import time

    import httpx

    from apps.agents.models import Run

    model = llm_routes("script-slow-words")
    scripted.script(model, [{"text": "one two three four five six", "word_delay": 0.3}])
    sofia(model)
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        with client.stream("POST", CHAT, headers=agents_headers, json={"message": "hello", "stream": True}) as response:
            run_id = response.headers["x-daarion-run-id"]
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "text-delta":
                    break  # the model is still streaming; we hang up
    assert Run.objects.get(pk=run_id).status in ("running", "queued")
    deadline = time.monotonic() + 20
    while Run.objects.get(pk=run_id).status == "running":
        assert time.monotonic() < deadline, "the run did not finish without its client"
        time.sleep(0.1)
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.result["reply"] == "one two three four five six"
    assert MemoryEntry.objects.filter(agent_id="agent:sofia", meta__turn_id=run_id).count() == 1
    entries = Transcript.objects.get(session_id=run.session_id).entries
    assert [e["type"] for e in entries] == ["user", "assistant"]
