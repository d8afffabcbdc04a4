"""Runs over real HTTP, with a real worker of the `agents` queue: background runs, the run
and its stream from any web process (resume after Last-Event-ID), the AI SDK's body and
resume route, cancel, the session strategies, idempotency keys, history, and bad input."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from apps.agents.models import Run
from apps.agents.tests.conftest import wait_until
from apps.agents.tests.sse import assert_protocol, parse_events, parse_sse
from apps.memory.models import MemoryEntry, Transcript
from apps.demo.models import Followup
from devtools.testing import ServerProcess, start_asgi_server

AGENT = "/internal/agents/agent:sofia"
FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Send the meeting notes"}
SLOW = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def second_web(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    server = start_asgi_server({**server_env, "DATABASE_POOL": "1"}, tmp_path_factory.mktemp("web-2"), name="web-2")
    yield server
    server.stop()


def _run_status(run_id: str) -> str:
    return Run.objects.get(pk=run_id).status


def _wait_ended(run_id: str, timeout: float = 30.0) -> Run:
    wait_until(lambda: _run_status(run_id) not in ("queued", "running"), f"run {run_id} to end", timeout)
    return Run.objects.get(pk=run_id)


def _first_delta(client: httpx.Client, path: str, body: dict, headers: dict) -> tuple[str, list[tuple[str, dict]]]:
    """Starts a streamed chat, reads up to its first text delta and hangs up: (run id, events read)."""
    seen: list[tuple[str, dict]] = []
    with client.stream("POST", path, headers=headers, json=body) as response:
        assert response.status_code == 200, response.read()
        run_id = response.headers["x-daarion-run-id"]
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                seen.append((event_id, chunk))
                if chunk["type"] == "text-delta":
                    break
    return run_id, seen


def test_a_background_run_is_queued_run_and_kept(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-background")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Done."}])
    sofia(model)
    started = api.post(f"{AGENT}/runs", headers=agents_headers, json={"message": "Make a follow-up", "session_id": "s-bg"})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["status"] in ("queued", "running") and run["session_id"] == "s-bg" and run["id"].startswith("run-")
    _wait_ended(run["id"])
    got = api.get(f"/internal/agents/runs/{run['id']}", headers=agents_headers).json()
    assert got["status"] == "succeeded" and got["reply"] == "Done." and got["step_count"] == 2
    assert got["usage"]["total_tokens"] == 30 and got["error"] is None
    assert got["started_at"] and got["finished_at"] and got["duration_seconds"] >= 0
    parts = got["message"]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "tool-followups.create", "step-start", "text"]
    assert parts[1]["state"] == "output-available" and parts[1]["output"]["title"] == "Send the meeting notes"
    assert got["message"]["id"] == run["id"] and got["message"]["metadata"]["stored_memory_id"]
    # The stream replays a finished run from the start, each event with its id.
    replay = api.get(f"/internal/agents/runs/{run['id']}/stream", headers=agents_headers)
    assert replay.headers["x-daarion-run-id"] == run["id"]
    events, _, done = parse_events(replay.text)
    assert done and all(event_id for event_id, _ in events)
    assert_protocol([c for _, c in events])
    assert [c["type"] for _, c in events][0] == "start" and events[-1][1]["type"] == "finish"
    # After an id: only what came after it.
    cut = events[3][0]
    rest = api.get(f"/internal/agents/runs/{run['id']}/stream", headers={**agents_headers, "Last-Event-ID": cut})
    assert [c for _, c in parse_events(rest.text)[0]] == [c for _, c in events[4:]]
    assert Followup.objects.count() == 1
    assert MemoryEntry.objects.filter(meta__turn_id=run["id"]).count() == 1


def test_a_streamed_run_resumes_in_another_web_process(api, asgi_server, second_web, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-resume")
    scripted.script(model, [{"text": SLOW, "word_delay": 0.15}])
    sofia(model)
    with httpx.Client(base_url=asgi_server.url, timeout=30) as first:
        run_id, seen = _first_delta(first, f"{AGENT}/chat", {"message": "count", "stream": True}, agents_headers)
    assert _run_status(run_id) == "running"  # the client left; the run did not
    with httpx.Client(base_url=second_web.url, timeout=30) as second:
        rest = second.get(f"/internal/agents/runs/{run_id}/stream", headers={**agents_headers, "Last-Event-ID": seen[-1][0]})
    events, _, done = parse_events(rest.text)
    assert done
    chunks = [c for _, c in seen] + [c for _, c in events]
    assert_protocol(chunks)
    assert "".join(c.get("delta", "") for c in chunks if c["type"] == "text-delta").strip() == SLOW
    ids = [i for i, _ in seen] + [i for i, _ in events]
    assert len(ids) == len(set(ids)), "a chunk came twice"
    run = _wait_ended(run_id)
    assert run.status == "succeeded" and run.result["reply"] == SLOW
    assert MemoryEntry.objects.filter(meta__turn_id=run_id).count() == 1
    assert [e["type"] for e in Transcript.objects.get(session_id=run.session_id).entries] == ["user", "assistant"]


def test_the_ai_sdk_body_and_its_resume_route(api, agents_headers, sofia, llm_routes, scripted, asgi_server):
    model = llm_routes("runs-ai-sdk")
    scripted.script(model, [{"text": SLOW, "word_delay": 0.15}])
    sofia(model)
    assert api.get(f"{AGENT}/chat/chat-1/stream", headers=agents_headers).status_code == 204
    body = {
        "id": "chat-1",
        "trigger": "submit-message",
        "messageId": None,
        "messages": [
            {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Count for me"}]},
        ],
    }
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        run_id, _ = _first_delta(client, f"{AGENT}/chat", body, agents_headers)
        resumed = client.get(f"{AGENT}/chat/chat-1/stream", headers=agents_headers)
    assert resumed.status_code == 200 and resumed.headers["x-daarion-run-id"] == run_id
    chunks, _, done = parse_sse(resumed.text)
    assert done and chunks[0]["type"] == "start" and chunks[-1]["type"] == "finish"
    assert "".join(c.get("delta", "") for c in chunks if c["type"] == "text-delta").strip() == SLOW
    run = _wait_ended(run_id)
    assert run.session_id == "chat-1" and run.request["message"] == "Count for me"
    assert api.get(f"{AGENT}/chat/chat-1/stream", headers=agents_headers).status_code == 204


def test_cancel_mid_stream_keeps_the_partial_answer(api, agents_headers, sofia, llm_routes, scripted, asgi_server):
    model = llm_routes("runs-cancel")
    scripted.script(model, [{"text": SLOW, "word_delay": 0.3}])
    sofia(model)
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        run_id, _ = _first_delta(client, f"{AGENT}/chat", {"message": "count", "stream": True}, agents_headers)
        cancelled = client.post(f"/internal/agents/runs/{run_id}/cancel", headers=agents_headers)
        assert cancelled.status_code == 200, cancelled.text
        reader = client.get(f"/internal/agents/runs/{run_id}/stream", headers=agents_headers)
    chunks, _, done = parse_sse(reader.text)
    assert done and chunks[-1] == {"type": "finish", "messageMetadata": {"finish_reason": "cancelled"}}
    assert_protocol(chunks)
    run = _wait_ended(run_id)
    assert run.status == "cancelled" and run.error["type"] == "run_cancelled"
    partial = run.result["reply"]
    assert partial and SLOW.startswith(partial) and partial != SLOW
    assert run.message["parts"][-1]["type"] == "text"
    entries = Transcript.objects.get(session_id=run.session_id).entries
    assert [e["type"] for e in entries] == ["user", "assistant"]
    assert entries[1]["message"]["content"][0]["text"] == partial
    again = api.post(f"/internal/agents/runs/{run_id}/cancel", headers=agents_headers)
    assert again.status_code == 409 and again.json()["error"]["type"] == "run_not_active"


def test_a_queued_run_cancels_at_once(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-cancel-queued")
    scripted.script(model, [{"text": "slow", "delay": 1.5}])
    sofia(model)
    first = api.post(f"{AGENT}/runs", headers=agents_headers, json={"message": "a", "session_id": "s-cq"}).json()
    queued = api.post(
        f"{AGENT}/runs", headers=agents_headers, json={"message": "b", "session_id": "s-cq", "strategy": "enqueue"}
    ).json()
    assert queued["status"] == "queued"
    cancelled = api.post(f"/internal/agents/runs/{queued['id']}/cancel", headers=agents_headers).json()
    assert cancelled["status"] == "cancelled"
    chunks, _, done = parse_sse(api.get(f"/internal/agents/runs/{queued['id']}/stream", headers=agents_headers).text)
    assert done and [c["type"] for c in chunks] == ["start", "finish"]
    assert _wait_ended(first["id"]).status == "succeeded"
    assert Run.objects.get(pk=queued["id"]).started_at is None


def test_reject_and_enqueue(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-strategies")
    scripted.script(model, [{"text": "slow answer", "delay": 1.0}])
    sofia(model)
    first = api.post(f"{AGENT}/runs", headers=agents_headers, json={"message": "first", "session_id": "s-st"}).json()
    refused = api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "second", "session_id": "s-st"})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["type"] == "run_in_progress" and error["details"]["run_id"] == first["id"]
    queued = api.post(
        f"{AGENT}/chat",
        headers=agents_headers,
        json={"message": "second", "session_id": "s-st", "strategy": "enqueue"},
        timeout=60,
    )
    assert queued.status_code == 200, queued.text
    assert queued.json()["reply"] == "slow answer" and queued.json()["status"] == "succeeded"
    one, two = Run.objects.get(pk=first["id"]), Run.objects.get(pk=queued.json()["run_id"])
    assert one.status == two.status == "succeeded" and two.started_at >= one.finished_at
    bad = api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "x", "strategy": "interrupt"})
    assert bad.status_code == 422 and "strategy" in json.dumps(bad.json()["error"]["details"])


def test_twenty_concurrent_turns_on_one_session_keep_every_turn_in_order(
    api, asgi_server, agents_headers, sofia, llm_routes, scripted
):
    model = llm_routes("runs-twenty")
    scripted.script(model, [{"text": "ok"}])
    sofia(model)
    answers: dict[int, httpx.Response] = {}

    def send(n: int) -> None:
        with httpx.Client(base_url=asgi_server.url, timeout=120) as client:
            answers[n] = client.post(
                f"{AGENT}/chat",
                headers=agents_headers,
                json={"message": f"turn {n}", "session_id": "s-20", "strategy": "enqueue"},
            )

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code == 200 for r in answers.values()), [r.text for r in answers.values() if r.status_code != 200]
    runs = list(Run.objects.filter(session_id="s-20").order_by("created_at"))
    assert len(runs) == 20 and {r.status for r in runs} == {"succeeded"}
    for earlier, later in zip(runs, runs[1:]):
        assert later.started_at >= earlier.finished_at
    entries = Transcript.objects.get(session_id="s-20").entries
    users = [e["message"]["content"] for e in entries if e["type"] == "user"]
    assert users == [r.request["message"] for r in runs]
    assert len({e["uuid"] for e in entries}) == len(entries) == 40
    # Chained in order: each entry's parent is the one before it.
    assert all(b["parentUuid"] == a["uuid"] for a, b in zip(entries, entries[1:]))


def test_an_idempotency_key_returns_the_same_run(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-idempotent")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Created."}])
    sofia(model)
    headers = {**agents_headers, "Idempotency-Key": "key-1"}
    body = {"message": "make one", "session_id": "s-idem"}
    first = api.post(f"{AGENT}/chat", headers=headers, json=body)
    again = api.post(f"{AGENT}/chat", headers=headers, json=body)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-daarion-run-id"] == again.headers["x-daarion-run-id"]
    assert again.json()["reply"] == "Created."
    assert Followup.objects.count() == 1 and Run.objects.count() == 1
    background = api.post(f"{AGENT}/runs", headers=headers, json=body)
    assert background.status_code == 200 and background.json()["id"] == first.json()["run_id"]
    other = api.post(f"{AGENT}/chat", headers=headers, json={**body, "message": "something else"})
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_key_reused"


def test_the_next_turn_sees_the_sessions_history(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-history")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Created it."}])
    sofia(model)
    assert (
        api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "first ask", "session_id": "s-h"}).status_code == 200
    )
    scripted.script(model, [{"text": "I remember."}])
    assert (
        api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "second ask", "session_id": "s-h"}).status_code == 200
    )
    [request] = scripted.seen(model)
    roles = [(m["role"], m.get("content") if isinstance(m.get("content"), str) else None) for m in request["messages"]]
    assert roles[0][0] == "system" and roles[-1] == ("user", "second ask")
    earlier = request["messages"][1:-1]
    assert [m["role"] for m in earlier] == ["user", "assistant", "tool", "assistant"]
    assert earlier[0]["content"] == "first ask" and earlier[-1]["content"].strip() == "Created it."
    assert earlier[1]["tool_calls"][0]["function"]["name"] == "followups__create"
    assert earlier[2]["tool_call_id"] == earlier[1]["tool_calls"][0]["id"]
    # history_turns 0: nothing of it.
    sofia(model, load=False, history_turns=0)
    scripted.script(model, [{"text": "Fresh."}])
    api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "third ask", "session_id": "s-h"})
    assert [m["role"] for m in scripted.seen(model)[0]["messages"]] == ["system", "user"]


def test_runs_list_filters_and_pages(api, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("runs-list")
    scripted.script(model, [{"text": "ok"}])
    sofia(model)
    for n in range(3):
        api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": f"m{n}", "session_id": "s-list"})
    api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "other", "session_id": "s-other"})
    page = api.get(f"{AGENT}/runs", headers=agents_headers, params={"session_id": "s-list", "limit": 2}).json()
    assert [r["reply"] for r in page["items"]] == ["ok", "ok"] and page["next_cursor"]
    rest = api.get(
        f"{AGENT}/runs", headers=agents_headers, params={"session_id": "s-list", "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    ids = [r["id"] for r in page["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 3 and rest["next_cursor"] is None
    assert ids == [r.pk for r in Run.objects.filter(session_id="s-list").order_by("-created_at")]
    assert len(api.get(f"{AGENT}/runs", headers=agents_headers, params={"status": "succeeded"}).json()["items"]) == 4
    assert api.get(f"{AGENT}/runs", headers=agents_headers, params={"status": "queued"}).json()["items"] == []


def test_bad_input_and_other_agents_runs(api, agents_headers, sofia, llm_routes, scripted, make_token, bearer):
    model = llm_routes("runs-bad")
    scripted.script(model, [{"text": "ok"}])
    sofia(model)
    run_id = api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "hi"}).headers["x-daarion-run-id"]
    for method, path in (
        ("get", "/internal/agents/runs/run-nope"),
        ("get", "/internal/agents/runs/run-nope/stream"),
        ("post", "/internal/agents/runs/run-nope/cancel"),
    ):
        response = getattr(api, method)(path, headers=agents_headers)
        assert response.status_code == 404 and response.json()["error"]["type"] == "run_not_found", path
    other = bearer(make_token(scopes=["agents"], agents=["agent:cfo"]))
    for method, path in (
        ("get", f"/internal/agents/runs/{run_id}"),
        ("get", f"/internal/agents/runs/{run_id}/stream"),
        ("post", f"/internal/agents/runs/{run_id}/cancel"),
        ("get", f"{AGENT}/runs"),
        ("get", f"{AGENT}/chat/s-x/stream"),
    ):
        response = getattr(api, method)(path, headers=other)
        assert response.status_code == 403 and response.json()["error"]["type"] == "agent_not_allowed", path
    assert api.get(f"{AGENT}/chat/no-such-chat/stream", headers=agents_headers).status_code == 204
    for bad in ("abc", "1-2-3", "-1", "1.5-0"):
        response = api.get(f"/internal/agents/runs/{run_id}/stream", headers={**agents_headers, "Last-Event-ID": bad})
        assert response.status_code == 422 and response.json()["error"]["details"][0]["path"] == "Last-Event-ID", bad
    assert api.get(f"{AGENT}/runs", headers=agents_headers, params={"status": "nope"}).status_code == 422
    bad_cursor = api.get(f"{AGENT}/runs", headers=agents_headers, params={"cursor": "!!"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["error"]["details"][0]["path"] == "cursor"
    assert api.get(f"{AGENT}/runs", headers=agents_headers, params={"limit": 0}).status_code == 422
    for body, path in (
        ({}, "body.message"),
        ({"messages": [{"role": "user", "parts": [{"type": "file"}]}]}, "body.messages"),
        ({"message": "x", "id": "a", "session_id": "b"}, "body.id"),
    ):
        response = api.post(f"{AGENT}/chat", headers=agents_headers, json=body)
        assert response.status_code == 422 and path in [d["path"] for d in response.json()["error"]["details"]], body
    too_long = api.post(f"{AGENT}/chat", headers={**agents_headers, "Idempotency-Key": "k" * 201}, json={"message": "x"})
    assert too_long.status_code == 422
    assert Run.objects.count() == 1


def test_an_agent_created_since_the_server_started_chats_at_once(api, agents_headers, llm_routes, scripted, agents_worker):
    from apps.agents.services import agent_create

    model = llm_routes("runs-new-agent")
    scripted.script(model, [{"text": "Hello from a new agent."}])
    agent_create(agent_id="agent:newbie", name="Newbie", microdao_id="microdao:7", model=model)
    first = api.post("/internal/agents/agent:newbie/chat", headers=agents_headers, json={"message": "hi"})
    assert first.status_code == 200, first.text
    assert first.json()["reply"].strip() == "Hello from a new agent."
    # An operator's unload is still honoured, in every process.
    assert api.post("/internal/agents/agent:newbie/unload", headers=agents_headers).status_code == 200
    refused = api.post("/internal/agents/agent:newbie/chat", headers=agents_headers, json={"message": "hi"})
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "agent_not_loaded"


def test_a_reader_past_the_end_and_a_reader_of_an_expired_stream_both_end(api, agents_headers, sofia, llm_routes, scripted):
    from apps.agents.runs.chunks import stream_key
    from daarion.infra.redis_client import get_redis

    model = llm_routes("runs-expired")
    scripted.script(model, [{"text": "Kept on the row."}])
    sofia(model)
    run_id = api.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "hi"}).json()["run_id"]
    # An id beyond this run's last entry (from another run, say): the reader ends, not waits.
    beyond = api.get(
        f"/internal/agents/runs/{run_id}/stream", headers={**agents_headers, "Last-Event-ID": "99999999999999-0"}, timeout=30
    )
    assert parse_sse(beyond.text)[2] is True
    get_redis().delete(stream_key(run_id))  # as retention would
    chunks, _, done = parse_sse(api.get(f"/internal/agents/runs/{run_id}/stream", headers=agents_headers).text)
    assert done and chunks[0] == {"type": "start", "messageId": run_id, "messageMetadata": chunks[0]["messageMetadata"]}
    assert "".join(c.get("delta", "") for c in chunks).strip() == "Kept on the row."
    assert chunks[-1]["type"] == "finish" and chunks[-1]["messageMetadata"]["stored_memory_id"]
    late = api.get(f"/internal/agents/runs/{run_id}/stream", headers={**agents_headers, "Last-Event-ID": "0-2"})
    assert parse_sse(late.text)[0] == chunks[2:]  # ids 0-1, 0-2 were read
    gone = api.get(f"/internal/agents/runs/{run_id}/stream", headers={**agents_headers, "Last-Event-ID": "17-0"})
    assert "run_stream_expired" in parse_sse(gone.text)[0][0]["errorText"]
