"""Hybrid retrieval against real Postgres + pgvector: text and vector, fused, scoped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from apps.memory import services
from apps.memory.search import memory_query
from daarion.infra.errors import ValidationFailed

from .conftest import AGENT, DAO

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def corpus(remember):
    texts = [
        ("The treasury approved a budget of 5000 DAAR for the hackathon", "kb", "c1"),
        ("Olena was elected as the new coordinator of microDAO 7", "dao-event", "c1"),
        ("We planned the roadmap for Q3: messaging, memory, toolcore", "task", "c2"),
        ("I enjoy hiking in the Carpathian mountains on weekends", "conversation", "c2"),
        ("The weekly sync moved to Thursday at 10:00", "kb", "c1"),
    ]
    entries = [
        remember(text, kind=kind, channel_id=ch, occurred_at=T0 + timedelta(days=i)) for i, (text, kind, ch) in enumerate(texts)
    ]
    return entries


def _embed(entries):
    services.memory_embed_entries(entry_ids=[e.id for e in entries])


def test_pending_entries_are_found_by_text(corpus):
    hits = memory_query(agent_id=AGENT, query="what budget did the treasury approve?")
    assert hits[0].id == corpus[0].id
    assert hits[0].content.startswith("The treasury approved")
    assert 0 < hits[0].score <= 1


def test_vector_side_ranks_once_embedded(corpus):
    _embed(corpus)
    hits = memory_query(agent_id=AGENT, query="coordinator elected", limit=3, neighbour_weight=0)
    assert hits[0].id == corpus[1].id
    assert hits[0].score == 1.0  # first in both rankings
    assert all(0 <= h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_response_shape_has_seed_fields(corpus):
    hit = memory_query(agent_id=AGENT, query="hiking", limit=1)[0]
    assert hit.kind == "conversation"
    assert hit.meta["source"] == "channel:c2"
    assert hit.meta["timestamp"] == (T0 + timedelta(days=3)).isoformat()


def test_other_agents_memories_are_never_returned(corpus, remember):
    secret = remember("The treasury budget secret of another agent", agent_id="agent:pm")
    _embed([*corpus, secret])
    for hit in memory_query(agent_id=AGENT, query="treasury budget secret another agent", limit=50):
        assert hit.id != secret.id
    assert [h.id for h in memory_query(agent_id="agent:pm", query="treasury", limit=50)] == [secret.id]
    assert memory_query(agent_id="agent:nobody", query="treasury") == []


def test_filters_channel_kinds_time_and_microdao(corpus, remember):
    _embed(corpus)
    other_dao = remember("budget of microDAO 9", microdao_id="microdao:9")
    in_c2 = {h.id for h in memory_query(agent_id=AGENT, channel_id="c2", query="roadmap hiking budget", limit=50)}
    assert in_c2 <= {corpus[2].id, corpus[3].id}
    kinds = {h.kind for h in memory_query(agent_id=AGENT, kinds=["kb"], query="budget sync", limit=50)}
    assert kinds == {"kb"}
    window = memory_query(
        agent_id=AGENT, since=T0 + timedelta(days=1), until=T0 + timedelta(days=3), query="roadmap coordinator budget", limit=50
    )
    assert {h.id for h in window} <= {corpus[1].id, corpus[2].id}
    assert other_dao.id not in {h.id for h in memory_query(agent_id=AGENT, microdao_id=DAO, query="budget", limit=50)}
    assert other_dao.id in {h.id for h in memory_query(agent_id=AGENT, query="budget microDAO 9", limit=50)}


def test_limit_is_capped(remember):
    for i in range(60):
        remember(f"note number {i} about apples")
    assert len(memory_query(agent_id=AGENT, query="apples", limit=500)) == 50
    assert len(memory_query(agent_id=AGENT, query="apples", limit=3)) == 3


def test_stop_word_only_query_still_answers_by_vector(corpus):
    _embed(corpus)
    assert isinstance(memory_query(agent_id=AGENT, query="the and of"), list)


def test_neighbouring_turns_are_lifted(remember):
    question = remember(
        {"speaker": "Mel", "text": "Where did you go on holiday?"}, kind="conversation", channel_id="s1", occurred_at=T0
    )
    answer = remember(
        {"speaker": "Ann", "text": "Lviv, it was lovely."},
        kind="conversation",
        channel_id="s1",
        occurred_at=T0 + timedelta(seconds=1),
    )
    for i in range(5):
        remember(
            {"speaker": "Ann", "text": f"unrelated chatter {i}"},
            kind="conversation",
            channel_id="s1",
            occurred_at=T0 + timedelta(hours=i + 1),
        )
    hits = memory_query(agent_id=AGENT, query="where did Ann go on holiday", limit=2)
    assert [h.id for h in hits] == [question.id, answer.id]


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"query": "  "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"since": T0, "until": T0}, "since"),
    ],
)
def test_bad_queries_are_refused(kwargs, path):
    args = {"agent_id": AGENT, "query": "budget", **kwargs}
    with pytest.raises(ValidationFailed) as info:
        memory_query(**args)
    assert info.value.details[0]["path"] == path


def test_large_scopes_use_the_hnsw_index(corpus, monkeypatch):
    from apps.memory import search

    _embed(corpus)
    monkeypatch.setattr(search, "EXACT_SEARCH_MAX", 0)
    hits = memory_query(agent_id=AGENT, query="coordinator elected", limit=3)
    assert hits[0].id == corpus[1].id
