"""/internal/agent-memory over real HTTP: the seed's contract, auth, isolation, bad input."""

from __future__ import annotations

import json

import pytest

from apps.memory.models import MemoryEntry, Transcript

AGENT = "agent:sofia"
DAO = "microdao:7"


@pytest.fixture
def headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"]))


@pytest.fixture
def sofia_headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"], agents=[AGENT]))


def _store(api, headers, **fields):
    body = {
        "agent_id": AGENT,
        "microdao_id": DAO,
        "kind": "conversation",
        "content": {"user_message": "What changed in the DAO?", "agent_reply": "The budget passed."},
        **fields,
    }
    return api.post("/internal/agent-memory/store", json=body, headers=headers)


def _error(response, status, type_=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if type_:
        assert error["type"] == type_
    return error


def test_store_then_query_follows_the_seed_contract(api, headers):
    response = _store(api, headers, channel_id="ch-1")
    assert response.status_code == 201
    body = response.json()
    assert body["ok"] is True and body["id"].startswith("mem-")
    query = {"agent_id": AGENT, "microdao_id": DAO, "channel_id": "ch-1", "query": "what changed with the budget?", "limit": 5}
    result = api.post("/internal/agent-memory/query", json=query, headers=headers)
    assert result.status_code == 200
    items = result.json()["items"]
    assert items[0]["id"] == body["id"]
    assert items[0]["kind"] == "conversation"
    assert items[0]["content"] == "User: What changed in the DAO?\nAgent: The budget passed."
    assert 0 < items[0]["score"] <= 1
    assert items[0]["meta"]["source"] == "channel:ch-1" and items[0]["meta"]["timestamp"]


def test_repeated_idempotency_key_answers_200_with_the_same_id(api, headers):
    first = _store(api, headers, idempotency_key="turn-1")
    again = _store(api, headers, idempotency_key="turn-1")
    by_header = api.post(
        "/internal/agent-memory/store",
        json={"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "x"}},
        headers={**headers, "Idempotency-Key": "turn-1"},
    )
    assert (first.status_code, again.status_code, by_header.status_code) == (201, 200, 200)
    assert first.json()["id"] == again.json()["id"] == by_header.json()["id"]
    assert MemoryEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"agent_id": ""}, "body.agent_id"),
        ({"microdao_id": None}, "body.microdao_id"),
        ({"kind": "gossip"}, "body.kind"),
        ({"content": "text"}, "body.content"),
        ({"content": {}}, "content"),
        ({"content": {"text": ""}}, "content"),
        ({"meta": [1]}, "body.meta"),
        ({"occurred_at": "yesterday"}, "body.occurred_at"),
        ({"idempotency_key": ""}, "body.idempotency_key"),
    ],
)
def test_store_bad_input_is_422_with_the_path(api, headers, body, path):
    error = _error(_store(api, headers, **body), 422, "validation_error")
    assert path in [d["path"] for d in error["details"]]
    assert MemoryEntry.objects.count() == 0


def test_the_acting_agent_follows_the_one_rule_of_every_door(api, headers, sofia_headers, make_token, bearer):
    # Bound to one agent: the agent may be left out, and is that agent.
    body = {"microdao_id": DAO, "kind": "kb", "content": {"text": "the zebra budget passed"}}
    stored = api.post("/internal/agent-memory/store", json=body, headers=sofia_headers)
    assert stored.status_code == 201, stored.text
    assert MemoryEntry.objects.get(pk=stored.json()["id"]).agent_id == AGENT
    hits = api.post("/internal/agent-memory/query", json={"query": "zebra budget"}, headers=sofia_headers).json()["items"]
    assert [h["id"] for h in hits] == [stored.json()["id"]]
    listed = api.get("/internal/agent-memory/", headers=sofia_headers).json()["items"]
    assert [e["id"] for e in listed] == [stored.json()["id"]]
    # Unbound, or bound to several: the call must say which agent (422 agent_required, at its path).
    several = bearer(make_token(scopes=["memory"], agents=[AGENT, "agent:pm"]))
    for who in (headers, several):
        error = _error(api.post("/internal/agent-memory/store", json=body, headers=who), 422, "agent_required")
        assert error["details"][0]["path"] == "body.agent_id"
        error = _error(api.get("/internal/agent-memory/", headers=who), 422, "agent_required")
        assert error["details"][0]["path"] == "query.agent_id"
    bulk = api.post("/internal/agent-memory/store/bulk", json={"items": [{**body, "agent_id": AGENT}, body]}, headers=headers)
    assert _error(bulk, 422, "agent_required")["details"][0]["path"] == "body.items[1].agent_id"
    # Naming an agent the token may not act for stays a 403, as everywhere.
    _error(api.post("/internal/agent-memory/query", json={"agent_id": "agent:pm", "query": "x"}, headers=sofia_headers), 403)
    assert MemoryEntry.objects.count() == 1


def test_store_malformed_json_and_oversized_content(api, headers):
    response = api.post(
        "/internal/agent-memory/store", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert "error" in response.json()
    _error(_store(api, headers, content={"text": "x" * (70 * 1024)}), 413, "payload_too_large")


def test_auth_is_required_and_scoped(api, make_token, bearer):
    _error(_store(api, {}), 401, "unauthorized")
    _error(_store(api, bearer(make_token(scopes=["llm"]))), 403, "scope_not_allowed")


def test_a_token_bound_to_agents_never_touches_another_agents_memory(api, headers, sofia_headers):
    pm_entry = _store(api, headers, agent_id="agent:pm", content={"text": "pm secret plan"}).json()["id"]
    _error(_store(api, sofia_headers, agent_id="agent:pm"), 403, "agent_not_allowed")
    _error(
        api.post("/internal/agent-memory/query", json={"agent_id": "agent:pm", "query": "secret"}, headers=sofia_headers),
        403,
        "agent_not_allowed",
    )
    _error(api.get(f"/internal/agent-memory/{pm_entry}", headers=sofia_headers), 404, "memory_not_found")
    _error(api.delete(f"/internal/agent-memory/{pm_entry}", headers=sofia_headers), 404, "memory_not_found")
    _error(api.post("/internal/agent-memory/forget", json={"agent_id": "agent:pm"}, headers=sofia_headers), 403)
    bulk = {
        "items": [
            {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "a"}},
            {"agent_id": "agent:pm", "microdao_id": DAO, "kind": "kb", "content": {"text": "b"}},
        ]
    }
    _error(api.post("/internal/agent-memory/store/bulk", json=bulk, headers=sofia_headers), 403)
    assert MemoryEntry.objects.filter(id=pm_entry).exists()
    assert MemoryEntry.objects.count() == 1
    mine = _store(api, sofia_headers, content={"text": "pm secret plan, sofia's copy"}).json()["id"]
    ids = [
        i["id"]
        for i in api.post(
            "/internal/agent-memory/query", json={"agent_id": AGENT, "query": "secret plan"}, headers=sofia_headers
        ).json()["items"]
    ]
    assert ids == [mine]


def test_query_bad_input(api, headers):
    url = "/internal/agent-memory/query"
    _error(api.post(url, json={"query": "x"}, headers=headers), 422)
    _error(api.post(url, json={"agent_id": AGENT, "query": ""}, headers=headers), 422)
    _error(api.post(url, json={"agent_id": AGENT, "query": "x", "limit": 0}, headers=headers), 422)
    _error(api.post(url, json={"agent_id": AGENT, "query": "x", "kinds": ["gossip"]}, headers=headers), 422)
    _error(
        api.post(
            url,
            json={"agent_id": AGENT, "query": "x", "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            headers=headers,
        ),
        422,
    )
    assert api.post(url, json={"agent_id": AGENT, "query": "x", "limit": 10_000}, headers=headers).status_code == 200


def test_get_and_delete_one_entry(api, headers):
    entry_id = _store(api, headers, meta={"source": "matrix"}).json()["id"]
    got = api.get(f"/internal/agent-memory/{entry_id}", headers=headers)
    assert got.status_code == 200
    assert got.json()["content"]["agent_reply"] == "The budget passed."
    assert got.json()["embedding_status"] in ("pending", "ready")
    assert api.delete(f"/internal/agent-memory/{entry_id}", headers=headers).json() == {"ok": True, "id": entry_id}
    _error(api.get(f"/internal/agent-memory/{entry_id}", headers=headers), 404, "memory_not_found")
    _error(api.delete(f"/internal/agent-memory/{entry_id}", headers=headers), 404)


def test_bulk_store_and_forget_by_scope(api, headers):
    items = [
        {"agent_id": AGENT, "microdao_id": DAO, "channel_id": f"c{i % 2}", "kind": "kb", "content": {"text": f"fact {i}"}}
        for i in range(4)
    ]
    response = api.post("/internal/agent-memory/store/bulk", json={"items": items}, headers=headers)
    assert response.status_code == 201 and response.json()["created"] == 4 and len(response.json()["ids"]) == 4
    bad = api.post(
        "/internal/agent-memory/store/bulk", json={"items": [*items[:1], {**items[1], "kind": "nope"}]}, headers=headers
    )
    assert "body.items.1.kind" in [d["path"] for d in _error(bad, 422)["details"]]
    _error(api.post("/internal/agent-memory/store/bulk", json={"items": []}, headers=headers), 422)
    forgot = api.post("/internal/agent-memory/forget", json={"agent_id": AGENT, "channel_id": "c0"}, headers=headers)
    assert forgot.json() == {"ok": True, "deleted": 2}
    assert MemoryEntry.objects.count() == 2


def _jsonl(entries):
    return "\n".join(json.dumps(e) for e in entries).encode()


TURNS = [
    {"type": "user", "uuid": "u1", "parentUuid": None, "message": "hi"},
    {"type": "progress", "uuid": "p1", "parentUuid": "u1"},
    {"type": "assistant", "uuid": "a1", "parentUuid": "p1", "message": "hello"},
]


def test_transcript_put_get_delete_with_versions(api, headers):
    url = "/internal/agent-memory/transcripts/sess-42"
    jsonl = {**headers, "Content-Type": "application/x-ndjson"}
    created = api.put(url + f"?agent_id={AGENT}", content=_jsonl(TURNS), headers=jsonl)
    assert created.status_code == 201
    assert created.json()["version"] == 1 and created.json()["stripped"] == 1 and created.json()["entry_count"] == 2
    got = api.get(url, headers=headers)
    assert got.headers["ETag"] == '"1"'
    assert [e["uuid"] for e in got.json()["entries"]] == ["u1", "a1"]
    assert got.json()["entries"][1]["parentUuid"] == "u1"
    raw = api.get(url + "?format=jsonl", headers=headers)
    assert raw.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line)["uuid"] for line in raw.text.splitlines()] == ["u1", "a1"]
    longer = [*TURNS, {"type": "user", "uuid": "u2", "parentUuid": "a1"}]
    updated = api.put(url, json={"agent_id": AGENT, "entries": longer}, headers={**headers, "If-Match": '"1"'})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    _error(
        api.put(url, json={"agent_id": AGENT, "entries": longer}, headers={**headers, "If-Match": '"1"'}),
        412,
        "precondition_failed",
    )
    _error(api.put(url, json={"agent_id": AGENT, "entries": TURNS}, headers=headers), 409, "transcript_shorter")
    assert api.delete(url, headers=headers).json() == {"ok": True, "id": "sess-42"}
    _error(api.get(url, headers=headers), 404, "transcript_not_found")


def test_transcript_bad_input(api, headers, sofia_headers):
    url = "/internal/agent-memory/transcripts/s1"
    jsonl = {**headers, "Content-Type": "application/x-ndjson"}
    _error(api.put(url, content=_jsonl(TURNS), headers=jsonl), 422)  # no agent_id
    _error(api.put(url + f"?agent_id={AGENT}", content=b'{"type": "user"}\nnot json', headers=jsonl), 422)
    _error(api.put(url + f"?agent_id={AGENT}", content=_jsonl(TURNS[:1]), headers=jsonl), 422)
    _error(api.put(url, content=b"{", headers={**headers, "Content-Type": "application/json"}), 400, "bad_json")
    _error(api.put(url, content=b"<xml/>", headers={**headers, "Content-Type": "application/xml"}), 415)
    _error(api.put(url, json={"agent_id": AGENT, "entries": TURNS}, headers={**headers, "If-Match": "soon"}), 400, "bad_if_match")
    _error(api.put(url, json={"agent_id": AGENT, "entries": TURNS}, headers={**headers, "If-Match": '"3"'}), 412)
    for bad in ("..%2F..%2Fetc", "a..b", ".x", "x" * 200):
        response = api.put(
            f"/internal/agent-memory/transcripts/{bad}", json={"agent_id": AGENT, "entries": TURNS}, headers=headers
        )
        assert response.status_code in (404, 422), bad
    assert not Transcript.objects.exists()
    # Another agent's transcript is invisible to a token bound to Sofia.
    assert (
        api.put(
            "/internal/agent-memory/transcripts/pm-1", json={"agent_id": "agent:pm", "entries": TURNS}, headers=headers
        ).status_code
        == 201
    )
    _error(api.get("/internal/agent-memory/transcripts/pm-1", headers=sofia_headers), 404)
    _error(api.delete("/internal/agent-memory/transcripts/pm-1", headers=sofia_headers), 404)
    _error(
        api.put(
            "/internal/agent-memory/transcripts/pm-1", json={"agent_id": "agent:pm", "entries": TURNS}, headers=sofia_headers
        ),
        403,
    )


def test_unknown_job_is_404(api, headers):
    _error(api.get("/internal/agent-memory/jobs/job-nope", headers=headers), 404, "job_not_found")
