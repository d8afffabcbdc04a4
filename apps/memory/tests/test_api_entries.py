"""The mem0-style calls of /internal/agent-memory over real HTTP: listing with filters and
cursors, updates with their history (concurrent ones included), and query filters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from apps.memory import services
from apps.memory.models import MemoryEntry, MemoryEntryVersion

AGENT = "agent:sofia"
DAO = "microdao:7"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
URL = "/internal/agent-memory/"


@pytest.fixture
def headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"]))


@pytest.fixture
def sofia_headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"], agents=[AGENT]))


def _error(response, status, type_=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if type_:
        assert error["type"] == type_
    return error


def _bulk(api, headers, items):
    response = api.post("/internal/agent-memory/store/bulk", json={"items": items}, headers=headers)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    # Embedded here, so a ranking never depends on how far a worker left running by another
    # test has got (the task skips what is done).
    services.memory_embed_entries(entry_ids=ids)
    return ids


@pytest.fixture
def stored(api, headers):
    """Twelve memories of Sofia over twelve days (channels a/b, kinds kb/task, meta.source
    matrix/telegram, meta.priority 0-2), and one of another agent."""
    items = [
        {
            "agent_id": AGENT,
            "microdao_id": DAO,
            "channel_id": "a" if i % 2 else "b",
            "kind": "kb" if i % 3 else "task",
            "content": {"text": f"fact number {i}"},
            "meta": {"source": "matrix" if i < 6 else "telegram", "priority": i % 3},
            "occurred_at": (T0 + timedelta(days=i)).isoformat(),
        }
        for i in range(12)
    ]
    items.append({"agent_id": "agent:pm", "microdao_id": DAO, "kind": "kb", "content": {"text": "pm fact"}})
    return _bulk(api, headers, items)[:12]


def _ids(response):
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_list_pages_through_an_agents_memories_newest_first(api, headers, stored):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"agent_id": AGENT, "limit": 5, **({"cursor": cursor} if cursor else {})}
        body = api.get(URL, params=params, headers=headers).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(stored))  # newest first, each once, none of agent:pm
    first = api.get(URL, params={"agent_id": AGENT, "limit": 1}, headers=headers).json()["items"][0]
    assert first["content"] == {"text": "fact number 11"} and first["version"] == 1 and first["lang"] == "en"


def test_list_filters_kind_channel_time_and_meta(api, headers, stored):
    def ids(**params):
        return set(_ids(api.get(URL, params={"agent_id": AGENT, **params}, headers=headers)))

    assert ids(kind="task") == {stored[i] for i in (0, 3, 6, 9)}
    assert ids(kind="task,kb") == set(stored)
    assert ids(channel_id="a") == {stored[i] for i in range(1, 12, 2)}
    assert ids(since=(T0 + timedelta(days=10)).isoformat()) == {stored[10], stored[11]}
    assert ids(until=(T0 + timedelta(days=2)).isoformat()) == {stored[0], stored[1]}
    assert ids(**{"meta.source": "telegram", "meta.priority": "2"}) == {stored[8], stored[11]}
    assert ids(**{"meta.source": "nowhere"}) == set()
    assert ids(kind="kb", channel_id="b", **{"meta.source": "matrix"}) == {stored[2], stored[4]}


def test_list_bad_input_is_422_in_the_envelope(api, headers, sofia_headers, stored):
    for params, path in (
        ({"agent_id": AGENT, "filter": "x"}, "query.filter"),
        ({"agent_id": AGENT, "cursor": "not-a-cursor"}, "query.cursor"),
        ({"agent_id": AGENT, "cursor": "WyJ4Il0"}, "query.cursor"),  # base64 JSON, but not ours
        ({"agent_id": AGENT, "kind": "gossip"}, "query.kind"),
        ({"agent_id": AGENT, "limit": "0"}, "query.limit"),
        ({"agent_id": AGENT, "limit": "lots"}, "query.limit"),
        ({"agent_id": AGENT, "since": "yesterday"}, "query.since"),
        ({"agent_id": AGENT, "since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "query.since"),
    ):
        error = _error(api.get(URL, params=params, headers=headers), 422, "validation_error")
        assert path in [d["path"] for d in error["details"]], (params, error)
    # No agent, and an unbound token: which agent is the one rule's question (agent_required).
    error = _error(api.get(URL, params={"limit": "5"}, headers=headers), 422, "agent_required")
    assert [d["path"] for d in error["details"]] == ["query.agent_id"]
    _error(api.get(URL, params={"agent_id": "agent:pm"}, headers=sofia_headers), 403, "agent_not_allowed")
    _error(api.get(URL, params={"agent_id": AGENT}), 401)


def test_update_replaces_content_keeps_history_and_reembeds(api, headers, stored):
    entry_id = stored[0]
    response = api.patch(f"{URL}{entry_id}", json={"content": {"text": "the sync moved to Friday"}}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["text"] == "the sync moved to Friday" and body["embedding_status"] == "pending"
    assert body["meta"] == {"source": "matrix", "priority": 0}  # meta untouched when not given
    meta_only = api.patch(f"{URL}{entry_id}", json={"meta": {"source": "email"}, "expected_version": 2}, headers=headers)
    assert meta_only.status_code == 200 and meta_only.json()["version"] == 3 and meta_only.json()["meta"] == {"source": "email"}
    history = api.get(f"{URL}{entry_id}/history", headers=headers).json()
    assert history["version"] == 3
    assert [(v["version"], v["text"], v["current"]) for v in history["items"]] == [
        (1, "fact number 0", False),
        (2, "the sync moved to Friday", False),
        (3, "the sync moved to Friday", True),
    ]
    assert history["items"][1]["meta"] == {"source": "matrix", "priority": 0}
    # The new text is what a query finds.
    services.memory_embed_entries(entry_ids=[entry_id])
    hits = api.post(
        "/internal/agent-memory/query", json={"agent_id": AGENT, "query": "when is the sync on Friday"}, headers=headers
    ).json()["items"]
    assert hits[0]["id"] == entry_id
    # Forgetting the entry forgets its history too.
    assert api.delete(f"{URL}{entry_id}", headers=headers).status_code == 200
    assert not MemoryEntryVersion.objects.filter(entry_id=entry_id).exists()


def test_concurrent_updates_are_never_lost(api, headers, stored):
    entry_id = stored[1]

    def patch(body):
        return api.patch(f"{URL}{entry_id}", json=body, headers=headers)

    # Both against version 1: exactly one wins, the other is told it is stale.
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                patch,
                [{"content": {"text": "first"}, "expected_version": 1}, {"content": {"text": "second"}, "expected_version": 1}],
            )
        )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409], [r.text for r in results]
    conflict = next(r for r in results if r.status_code == 409).json()["error"]
    assert conflict["type"] == "version_conflict" and conflict["details"] == {"version": 2}
    # Without a version they are applied one after the other: both land in the history.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(patch, [{"content": {"text": f"blind {i}"}} for i in range(4)]))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    history = api.get(f"{URL}{entry_id}/history", headers=headers).json()["items"]
    assert [v["version"] for v in history] == [1, 2, 3, 4, 5, 6]
    assert sorted(v["text"] for v in history[2:]) == [f"blind {i}" for i in range(4)]
    # If-Match: the transcript's form, 412 when stale.
    _error(api.patch(f"{URL}{entry_id}", json={"meta": {}}, headers={**headers, "If-Match": '"2"'}), 412, "precondition_failed")
    assert api.patch(f"{URL}{entry_id}", json={"meta": {}}, headers={**headers, "If-Match": '"6"'}).json()["version"] == 7


def test_update_bad_input_and_isolation(api, headers, sofia_headers, stored):
    pm_entry = MemoryEntry.objects.get(agent_id="agent:pm").id
    entry_id = stored[2]
    for body, path in (
        ({}, "body"),
        ({"content": {}}, "content"),
        ({"content": "text"}, "body.payload.content"),
        ({"text": "x"}, "body.payload.text"),
        ({"meta": [1]}, "body.payload.meta"),
        ({"content": {"text": "x"}, "expected_version": 0}, "body.payload.expected_version"),
        ({"content": {"text": "x"}, "lang": "ukrainian"}, "body.payload.lang"),
    ):
        error = _error(api.patch(f"{URL}{entry_id}", json=body, headers=headers), 422, "validation_error")
        assert any(d["path"].endswith(path.split(".")[-1]) for d in error["details"]), (body, error)
    _error(api.patch(f"{URL}{entry_id}", json={"meta": {}}, headers={**headers, "If-Match": "soon"}), 400, "bad_if_match")
    _error(api.patch(f"{URL}mem-nope", json={"meta": {}}, headers=headers), 404, "memory_not_found")
    _error(api.patch(f"{URL}{pm_entry}", json={"meta": {"x": 1}}, headers=sofia_headers), 404, "memory_not_found")
    _error(api.get(f"{URL}{pm_entry}/history", headers=sofia_headers), 404, "memory_not_found")
    assert MemoryEntry.objects.get(id=pm_entry).version == 1
    assert MemoryEntry.objects.get(id=entry_id).version == 1


def test_query_min_score_and_meta_filters(api, headers):
    items = [
        {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": text}, "meta": meta}
        for text, meta in (
            ("The treasury approved a budget of 5000 DAAR", {"source": "matrix", "verified": True}),
            ("The budget review is on Monday", {"source": "telegram", "verified": False}),
            ("Olena likes hiking in the mountains", {"source": "matrix"}),
        )
    ]
    ids = _bulk(api, headers, items)
    url = "/internal/agent-memory/query"

    def query(**extra):
        response = api.post(url, json={"agent_id": AGENT, "query": "treasury budget", "limit": 10, **extra}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    everything = query()
    assert everything[0]["id"] == ids[0]
    threshold = everything[0]["score"] - 0.001
    assert [h["id"] for h in query(min_score=threshold)] == [ids[0]]
    assert all(h["score"] >= 0.2 for h in query(min_score=0.2))
    assert query(min_score=1.0) == [] or query(min_score=1.0)[0]["score"] == 1.0
    assert {h["id"] for h in query(meta={"source": "telegram"})} == {ids[1]}
    assert {h["id"] for h in query(meta={"source": "matrix", "verified": True})} == {ids[0]}
    assert query(meta={"source": "email"}) == []
    for body, path in (
        ({"min_score": 1.5}, "min_score"),
        ({"min_score": -0.1}, "min_score"),
        ({"meta": {"source": ["a"]}}, "meta.source"),
        ({"meta": "matrix"}, "meta"),
        ({"filters": {"source": "matrix"}}, "filters"),
        ({"lang": "english"}, "lang"),
    ):
        response = api.post(url, json={"agent_id": AGENT, "query": "budget", **body}, headers=headers)
        error = _error(response, 422, "validation_error")
        assert any(d["path"].endswith(path) for d in error["details"]), (body, error)


def test_meta_source_is_not_doubled(api, headers):
    _bulk(
        api,
        headers,
        [
            {
                "agent_id": AGENT,
                "microdao_id": DAO,
                "channel_id": "channel:general",
                "kind": "kb",
                "content": {"text": "the general channel fact"},
            }
        ],
    )
    hit = api.post(
        "/internal/agent-memory/query", json={"agent_id": AGENT, "query": "general channel fact"}, headers=headers
    ).json()["items"][0]
    assert hit["meta"]["source"] == "channel:general"


def test_store_takes_the_callers_language(api, headers):
    url = "/internal/agent-memory/store"
    body = {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "Spotkanie jest w czwartek"}}
    entry_id = api.post(url, json={**body, "lang": "pl"}, headers=headers).json()["id"]
    assert api.get(f"{URL}{entry_id}", headers=headers).json()["lang"] == "pl"
    detected = api.post(url, json={**body, "content": {"text": "Зустріч у четвер"}}, headers=headers).json()["id"]
    assert api.get(f"{URL}{detected}", headers=headers).json()["lang"] == "uk"
    error = _error(api.post(url, json={**body, "lang": "polish"}, headers=headers), 422, "validation_error")
    assert "body.lang" in [d["path"] for d in error["details"]]
