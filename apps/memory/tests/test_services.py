"""Memory services against the real database: store, idempotency, validation, bulk,
forgetting, embedding, embedding models and transcripts.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from apps.memory import selectors, services
from apps.memory.services import embedding, transcripts
from apps.memory.choices import EmbeddingStatus
from apps.memory.models import EmbeddingModel, MemoryEntry, Transcript
from daarion.infra.errors import Conflict, PayloadTooLarge, PreconditionFailed, ValidationFailed

from .conftest import AGENT, DAO

pytestmark = pytest.mark.django_db


def test_store_keeps_content_derives_text_and_waits_for_its_embedding(remember):
    entry = remember(
        {"user_message": "Who leads DAO 7?", "agent_reply": "Olena does."},
        kind="conversation",
        channel_id="ch-1",
        meta={"source": "matrix"},
    )
    entry.refresh_from_db()
    assert entry.id.startswith("mem-")
    assert entry.content == {"user_message": "Who leads DAO 7?", "agent_reply": "Olena does."}
    assert entry.text == "User: Who leads DAO 7?\nAgent: Olena does."
    assert entry.meta == {"source": "matrix"}
    assert entry.embedding_status == EmbeddingStatus.PENDING
    assert entry.embedding is None


def test_repeated_idempotency_key_returns_the_first_entry(remember):
    first, created = services.memory_store(
        agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "a"}, idempotency_key="k1"
    )
    again, created_again = services.memory_store(
        agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "b"}, idempotency_key="k1"
    )
    assert created and not created_again
    assert again.id == first.id
    # The key is per agent: another agent may use it.
    other, other_created = services.memory_store(
        agent_id="agent:pm", microdao_id=DAO, kind="kb", content={"text": "a"}, idempotency_key="k1"
    )
    assert other_created and other.id != first.id
    assert MemoryEntry.objects.count() == 2


def test_idempotency_is_a_database_constraint(remember):
    from django.db import IntegrityError, transaction

    remember("x", idempotency_key="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        MemoryEntry.objects.create(
            agent_id=AGENT,
            microdao_id=DAO,
            kind="kb",
            content={"text": "y"},
            text="y",
            occurred_at=datetime.now(timezone.utc),
            idempotency_key="dup",
        )


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "a" * 129}, "agent_id"),
        ({"microdao_id": None}, "microdao_id"),
        ({"kind": "gossip"}, "kind"),
        ({"content": {}}, "content"),
        ({"content": ["not", "a", "dict"]}, "content"),
        ({"content": {"text": "   "}}, "content"),
        ({"meta": ["x"]}, "meta"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"channel_id": 5}, "channel_id"),
    ],
)
def test_store_rejects_bad_fields_with_their_path(fields, path):
    args = {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "ok"}, **fields}
    with pytest.raises(ValidationFailed) as info:
        services.memory_store(**args)
    assert info.value.details[0]["path"] == path
    assert MemoryEntry.objects.count() == 0


def test_store_rejects_oversized_content_and_meta():
    with pytest.raises(PayloadTooLarge):
        services.memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "x" * (70 * 1024)})
    with pytest.raises(PayloadTooLarge):
        services.memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "x"}, meta={"m": "y" * 9000})


def test_bulk_store_is_all_or_nothing_and_honours_keys(remember):
    existing = remember("old", idempotency_key="k-old")
    items = [
        {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": f"fact {i}"}, "idempotency_key": f"k{i}"}
        for i in range(3)
    ] + [{"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "old again"}, "idempotency_key": "k-old"}]
    results = services.memory_store_bulk(items=items)
    assert [created for _, created in results] == [True, True, True, False]
    assert results[3][0].id == existing.id
    assert MemoryEntry.objects.count() == 4
    bad = [*items[:2], {"agent_id": AGENT, "microdao_id": DAO, "kind": "nope", "content": {"text": "z"}}]
    with pytest.raises(ValidationFailed) as info:
        services.memory_store_bulk(items=bad)
    assert info.value.details[0]["path"] == "items.2.kind"
    with pytest.raises(ValidationFailed):
        services.memory_store_bulk(items=[items[0], items[0]])
    with pytest.raises(ValidationFailed):
        services.memory_store_bulk(items=[])
    assert MemoryEntry.objects.count() == 4


def test_forget_deletes_only_the_scope(remember):
    remember("a", channel_id="c1")
    remember("b", channel_id="c2")
    remember("c", agent_id="agent:pm")
    assert services.memory_forget(agent_id=AGENT, channel_id="c1") == 1
    assert set(MemoryEntry.objects.values_list("text", flat=True)) == {"b", "c"}
    assert services.memory_forget(agent_id=AGENT) == 1
    assert list(MemoryEntry.objects.values_list("text", flat=True)) == ["c"]


def test_embedding_is_idempotent_and_records_the_model(remember):
    entry = remember("the treasury report")
    assert services.memory_embed_entries(entry_ids=[entry.id]) == {"embedded": 1, "failed": 0}
    entry.refresh_from_db()
    assert entry.embedding_status == EmbeddingStatus.READY
    assert entry.embedding_model == "hash"
    assert len(entry.embedding) == 256
    assert services.memory_embed_entries(entry_ids=[entry.id]) == {"embedded": 0, "failed": 0}
    assert services.memory_embed_entries(entry_ids=["mem-gone"]) == {"embedded": 0, "failed": 0}


def test_a_model_that_cannot_embed_marks_entries_failed_with_the_reason(remember):
    from apps.memory.selectors import model_spec

    services.embedding_model_save(name="llm:no-such-model", backend="llm", dimensions=8)
    entry = remember("text")
    counts = services.memory_embed_entries(entry_ids=[entry.id], spec=model_spec("llm:no-such-model"))
    assert counts == {"embedded": 0, "failed": 1}
    entry.refresh_from_db()
    assert entry.embedding_status == EmbeddingStatus.FAILED
    assert entry.embedding_error


def test_embedding_models_one_active_and_validated(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.embedding_model_save(name="llm:emb-small", backend="llm", dimensions=16, is_active=True)
    assert selectors.active_model_spec().name == "llm:emb-small"
    assert list(EmbeddingModel.objects.filter(is_active=True).values_list("name", flat=True)) == ["llm:emb-small"]
    services.embedding_model_activate(name="hash")
    assert list(EmbeddingModel.objects.filter(is_active=True).values_list("name", flat=True)) == ["hash"]
    with pytest.raises(ValidationFailed):
        services.embedding_model_save(name="emb", backend="llm", dimensions=16)
    with pytest.raises(ValidationFailed):
        services.embedding_model_save(name="llm:big", backend="llm", dimensions=5000)
    with pytest.raises(ValidationFailed):
        services.embedding_model_save(name="x", backend="magic", dimensions=5)


def test_changing_dimensions_of_a_model_with_vectors_is_refused(remember):
    entry = remember("x")
    services.memory_embed_entries(entry_ids=[entry.id])
    with pytest.raises(Conflict):
        services.embedding_model_save(name="hash", backend="hash", dimensions=128)


def test_local_model_falls_back_to_hash_when_absent(monkeypatch, django_capture_on_commit_callbacks):
    from apps.memory.embeddings import local

    with django_capture_on_commit_callbacks(execute=True):
        services.embedding_model_activate(name="local")
    monkeypatch.setattr(local, "is_available", lambda: False)
    assert selectors.active_model_spec().name == "hash"


def test_update_keeps_versions_and_a_stale_vector_is_not_saved(remember):
    from apps.memory.models import MemoryEntry, MemoryEntryVersion

    entry = remember("the sync is on Thursday", meta={"source": "matrix"})
    stale = MemoryEntry.objects.get(id=entry.id)  # what an embedding task read before the update
    updated = services.memory_update(entry_id=entry.id, content={"text": "the sync is on Friday"})
    assert (updated.version, updated.text, updated.meta) == (2, "the sync is on Friday", {"source": "matrix"})
    assert embedding._embed_and_save(selectors.active_model_spec(), [stale]) == 0
    assert MemoryEntry.objects.get(id=entry.id).embedding_status == "pending"
    assert services.memory_embed_entries(entry_ids=[entry.id]) == {"embedded": 1, "failed": 0}
    assert list(MemoryEntryVersion.objects.filter(entry_id=entry.id).values_list("version", "text")) == [
        (1, "the sync is on Thursday")
    ]
    with pytest.raises(ValidationFailed):
        services.memory_update(entry_id=entry.id)
    assert services.memory_forget(agent_id=AGENT) == 1
    assert not MemoryEntryVersion.objects.exists()


# --- transcripts ---------------------------------------------------------------------------


def _turns():
    return [
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": "hi"},
        {"type": "progress", "uuid": "p1", "parentUuid": "u1"},
        {"type": "file-history-snapshot", "uuid": "s1", "parentUuid": "p1"},
        {"type": "assistant", "uuid": "a1", "parentUuid": "s1", "message": "hello"},
        {"type": "queue-operation", "operation": "enqueue"},
    ]


def test_transcript_strips_bookkeeping_and_reparents_children():
    transcript, created, stripped = services.transcript_put(session_id="sess-1", agent_id=AGENT, entries=_turns())
    assert created and stripped == 3
    assert [e["uuid"] for e in transcript.entries] == ["u1", "a1"]
    assert transcript.entries[1]["parentUuid"] == "u1"
    assert transcript.version == 1


def test_transcript_strips_summary_and_pr_link_entries():
    entries = [
        {"type": "summary", "summary": "Fixing the budget page", "leafUuid": "a1"},
        {"type": "user", "uuid": "u1", "parentUuid": None, "message": "hi"},
        {"type": "pr-link", "uuid": "l1", "parentUuid": "u1", "url": "https://example.org/pull/1"},
        {"type": "assistant", "uuid": "a1", "parentUuid": "l1", "message": "hello"},
    ]
    transcript, _, stripped = services.transcript_put(session_id="sess-2", agent_id=AGENT, entries=entries)
    assert stripped == 2
    assert [e["type"] for e in transcript.entries] == ["user", "assistant"]
    assert transcript.entries[1]["parentUuid"] == "u1"


def test_transcript_needs_a_user_and_an_assistant_entry():
    with pytest.raises(ValidationFailed) as info:
        services.transcript_put(session_id="s", agent_id=AGENT, entries=[{"type": "user", "uuid": "u"}])
    assert "assistant" in info.value.message


@pytest.mark.parametrize(
    "entries",
    [
        [{"uuid": "x"}],
        [{"type": "user", "uuid": "u"}, {"type": "assistant", "uuid": "u"}],
        [{"type": "user", "uuid": 5}],
        [{"type": "user", "parentUuid": 7}],
        ["not an object"],
    ],
)
def test_transcript_rejects_malformed_entries(entries):
    with pytest.raises(ValidationFailed):
        services.transcript_put(session_id="s", agent_id=AGENT, entries=entries)


@pytest.mark.parametrize("session_id", ["../etc/passwd", "a/b", "", ".hidden", "a..b", "x" * 129, "sp ace", "nul\x00"])
def test_session_ids_are_sanitized(session_id):
    with pytest.raises(ValidationFailed):
        services.transcript_put(session_id=session_id, agent_id=AGENT, entries=_turns())
    assert not Transcript.objects.exists()


def test_stale_writers_never_overwrite_newer_transcripts():
    services.transcript_put(session_id="s", agent_id=AGENT, entries=_turns())
    longer = [*_turns(), {"type": "user", "uuid": "u2", "parentUuid": "a1"}]
    transcript, created, _ = services.transcript_put(session_id="s", agent_id=AGENT, entries=longer)
    assert not created and transcript.version == 2
    with pytest.raises(Conflict):
        services.transcript_put(session_id="s", agent_id=AGENT, entries=_turns())
    with pytest.raises(PreconditionFailed) as info:
        services.transcript_put(session_id="s", agent_id=AGENT, entries=_turns(), if_match=1)
    assert info.value.details == {"version": 2}
    transcript, _, _ = services.transcript_put(session_id="s", agent_id=AGENT, entries=_turns(), if_match=2)
    assert transcript.version == 3 and transcript.entry_count == 2
    with pytest.raises(Conflict):
        services.transcript_put(session_id="s", agent_id="agent:pm", entries=longer)


def test_transcript_append_adds_turns_and_bumps_the_version():
    first = services.transcript_append(session_id="s2", agent_id=AGENT, entries=_turns())
    assert first.version == 1
    after = services.transcript_append(
        session_id="s2", agent_id=AGENT, entries=[{"type": "user", "uuid": "u9", "parentUuid": "a1"}]
    )
    assert after.version == 2 and after.entry_count == 3


def test_transcript_size_caps(monkeypatch):
    monkeypatch.setattr(transcripts, "TRANSCRIPT_MAX_ENTRIES", 3)
    with pytest.raises(PayloadTooLarge):
        services.transcript_put(session_id="s", agent_id=AGENT, entries=[*_turns()])


def test_demo_seed_is_idempotent():
    from apps.demo import memory as demo

    demo.seed()
    demo.seed()
    assert MemoryEntry.objects.filter(agent_id=AGENT).count() == len(demo.MEMORIES)
    assert Transcript.objects.filter(session_id="demo-session").exists()
