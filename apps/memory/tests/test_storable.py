"""Input PostgreSQL cannot store (NUL, lone surrogates, NaN, instants outside years 1-9999)
answers 422 over HTTP, never a 500, and never lands in a row that would break later reads."""

from __future__ import annotations

import pytest

from apps.memory.models import MemoryEntry, Transcript
from apps.memory.services import memory_store
from daarion.infra.errors import ValidationFailed

AGENT = "agent:sofia"
DAO = "microdao:7"
MEMORY = "/internal/agent-memory"


@pytest.fixture
def headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"]))


def _raw(api, path, body: bytes, headers):
    return api.post(path, content=body, headers={**headers, "content-type": "application/json"})


def _422(response, path_part: str = "") -> dict:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    if path_part:
        assert path_part in error["message"], error
    return error


STORE = '{"agent_id": "agent:sofia", "microdao_id": "microdao:7", "kind": "kb", %s}'


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ('"content": {"text": "a\\u0000b"}', "text"),
        ('"content": {"t\\u0000": "ab"}', "key"),
        ('"content": {"text": "a \\ud800"}', "surrogate"),
        ('"content": {"text": "ab", "n": 1e400}', "finite"),
        ('"content": {"text": "ab"}, "meta": {"a": ["\\u0000"]}', "meta"),
        ('"content": {"text": "ab"}, "idempotency_key": "k\\u0000"', "idempotency_key"),
        ('"content": {"text": "ab"}, "channel_id": "c\\u0000"', "channel_id"),
        ('"content": {"text": "ab"}, "occurred_at": "0001-01-01T00:00:00+05:00"', "occurred_at"),
        ('"content": {"text": "ab"}, "occurred_at": "9999-12-31T23:59:59-05:00"', "occurred_at"),
    ],
)
def test_store_refuses_what_postgres_cannot_hold(api, headers, fields, where):
    response = _raw(api, f"{MEMORY}/store", (STORE % fields).encode(), headers)
    _422(response, where)
    bulk = _raw(api, f"{MEMORY}/store/bulk", ('{"items": [%s]}' % (STORE % fields)).encode(), headers)
    _422(bulk)
    assert MemoryEntry.objects.count() == 0


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_before_the_store(api, headers, constant):
    # The API's JSON parser refuses them (400); 1e400 parses to infinity and is the 422 above.
    response = _raw(api, f"{MEMORY}/store", (STORE % f'"content": {{"text": "ab", "n": {constant}}}').encode(), headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "bad_request"
    assert MemoryEntry.objects.count() == 0


@pytest.mark.django_db
def test_the_service_refuses_non_finite_numbers():
    with pytest.raises(ValidationFailed) as caught:
        memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "ab", "n": float("nan")})
    assert caught.value.details[0]["path"] == "content.n"


def test_nul_in_an_agent_id_is_422_not_500(api, headers):
    body = {"agent_id": "agent:\u0000sofia", "microdao_id": DAO, "kind": "kb", "content": {"text": "ab"}}
    _422(api.post(f"{MEMORY}/store", json=body, headers=headers), "NUL")
    _422(api.post(f"{MEMORY}/query", json={"agent_id": "agent:sofia\u0000", "query": "ab"}, headers=headers), "agent_id")
    _422(api.post(f"{MEMORY}/forget", json={"agent_id": "agent:\u0000"}, headers=headers), "agent_id")
    _422(api.post(f"{MEMORY}/summarize", json={"agent_id": AGENT, "microdao_id": "m\u0000"}, headers=headers), "microdao_id")
    _422(
        api.post(f"{MEMORY}/summarize", json={"agent_id": AGENT, "microdao_id": DAO, "model": "x\u0000"}, headers=headers),
        "model",
    )


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_query_and_summarize_refuse_unstorable_instants(api, headers, when):
    _422(api.post(f"{MEMORY}/query", json={"agent_id": AGENT, "query": "ab", "since": when}, headers=headers), "since")
    _422(api.post(f"{MEMORY}/summarize", json={"agent_id": AGENT, "microdao_id": DAO, "until": when}, headers=headers), "until")


def test_far_offsets_inside_the_range_are_stored_in_utc(api, headers):
    response = _raw(
        api,
        f"{MEMORY}/store",
        (STORE % '"content": {"text": "ab"}, "occurred_at": "2026-01-01T00:00:00+19:00"').encode(),
        headers,
    )
    assert response.status_code == 201, response.text
    entry = api.get(f"{MEMORY}/{response.json()['id']}", headers=headers)
    assert entry.status_code == 200
    assert entry.json()["occurred_at"].startswith("2025-12-31T05:00:00")
    found = api.post(
        f"{MEMORY}/query", json={"agent_id": AGENT, "query": "ab", "since": "2025-12-31T05:00:00+23:00"}, headers=headers
    )
    assert found.status_code == 200 and [i["id"] for i in found.json()["items"]] == [response.json()["id"]]
    # PostgreSQL takes offsets up to 15:59 only; this one was a 500 before the UTC conversion.
    old = api.post(
        f"{MEMORY}/query", json={"agent_id": AGENT, "query": "ab", "since": "0209-11-22T12:07:09+19:17"}, headers=headers
    )
    assert old.status_code == 200 and len(old.json()["items"]) == 1


def test_transcript_entries_refuse_nul(api, headers):
    entries = [{"type": "user", "message": "hi"}, {"type": "assistant", "message": "a\u0000b"}]
    _422(api.put(f"{MEMORY}/transcripts/s-1", json={"agent_id": AGENT, "entries": entries}, headers=headers), "NUL")
    jsonl = '{"type": "user", "message": "hi"}\n{"type": "assistant", "message": "a\\u0000b"}\n'
    response = api.put(
        f"{MEMORY}/transcripts/s-1?agent_id={AGENT}",
        content=jsonl.encode(),
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    _422(response, "entries.1")
    nul_agent = api.put(
        f"{MEMORY}/transcripts/s-1",
        json={"agent_id": "agent:\u0000", "entries": entries[:1] + [{"type": "assistant"}]},
        headers=headers,
    )
    _422(nul_agent, "agent_id")
    assert Transcript.objects.count() == 0


@pytest.mark.django_db
def test_the_service_refuses_nul_from_any_caller():
    # The agents pipeline stores turns through the service, not the API.
    with pytest.raises(ValidationFailed) as caught:
        memory_store(
            agent_id=AGENT, microdao_id=DAO, kind="conversation", content={"user_message": "hi\u0000", "agent_reply": "ok"}
        )
    assert caught.value.details[0]["path"] == "content.user_message"
