"""Embedding, requeue and re-embed jobs through a real Celery worker process."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.memory import services
from apps.memory.choices import EmbeddingStatus
from apps.memory.models import MemoryEntry, MemoryJob
from apps.memory.search import memory_query

AGENT = "agent:sofia"
DAO = "microdao:7"

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _statuses(ids):
    return set(MemoryEntry.objects.filter(id__in=ids).values_list("embedding_status", flat=True))


def test_stored_entries_are_embedded_by_the_worker(celery_worker):
    entry, _ = services.memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "the grant was approved"})
    _wait(lambda: _statuses([entry.id]) == {EmbeddingStatus.READY}, what="embedding")
    entry.refresh_from_db()
    assert entry.embedding_model == "hash" and len(entry.embedding) == 256
    results = services.memory_store_bulk(
        items=[{"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": f"fact {i}"}} for i in range(5)]
    )
    ids = [e.id for e, _ in results]
    _wait(lambda: _statuses(ids) == {EmbeddingStatus.READY}, what="bulk embedding")


def test_entries_whose_task_was_lost_are_requeued(celery_worker):
    # Written as if the broker had been down: no task was ever sent for these rows.
    rows = [
        MemoryEntry.objects.create(
            agent_id=AGENT,
            microdao_id=DAO,
            kind="kb",
            content={"text": f"lost {i}"},
            text=f"lost {i}",
            occurred_at=timezone.now(),
        )
        for i in range(3)
    ]
    ids = [r.id for r in rows]
    MemoryEntry.objects.filter(id__in=ids).update(created_at=timezone.now() - timedelta(minutes=5))
    # Meanwhile they are found by text.
    assert {h.id for h in memory_query(agent_id=AGENT, query="lost", limit=10)} == set(ids)
    from apps.memory.tasks import requeue_pending

    assert requeue_pending.apply_async().get(timeout=30) == 3
    _wait(lambda: _statuses(ids) == {EmbeddingStatus.READY}, what="requeued embeddings")


def test_reembed_moves_every_entry_onto_the_new_model(celery_worker, capsys):
    results = services.memory_store_bulk(
        items=[
            {"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": f"note {i} on pgvector"}} for i in range(6)
        ]
    )
    ids = [e.id for e, _ in results]
    _wait(lambda: _statuses(ids) == {EmbeddingStatus.READY}, what="first embedding")
    services.embedding_model_save(name="hash-64", backend="hash", dimensions=64)
    try:
        call_command("reembed", "--model", "hash-64", "--timeout", "60")
        assert set(MemoryEntry.objects.values_list("embedding_model", flat=True)) == {"hash-64"}
        job = MemoryJob.objects.get(kind="reembed")
        assert job.status == "succeeded" and job.result["done"] == 6 and job.result["total"] == 6
        assert "100.0%" in capsys.readouterr().err
        # Queries run on the new model's vectors.
        assert memory_query(agent_id=AGENT, query="note 3 pgvector", limit=1)[0].id == ids[3]
    finally:
        services.embedding_model_activate(name="hash")


def test_reembed_inline_without_a_worker(capsys):
    services.memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "inline"})
    call_command("reembed", "--inline")
    assert set(MemoryEntry.objects.values_list("embedding_status", flat=True)) == {EmbeddingStatus.READY}
    captured = capsys.readouterr()
    # A worker left running by an earlier test may have embedded it first: 0 or 1.
    assert "memories with hash (0 failed)" in captured.out
    assert "100.0% 1/1" in captured.err


def test_the_requeue_job_is_on_the_beat_schedule():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["memory-requeue-pending"]
    assert entry["task"] == "memory.requeue_pending"


def test_reembed_unknown_model_is_a_command_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="does not exist"):
        call_command("reembed", "--model", "no-such-model", "--inline")


def test_a_store_over_http_is_embedded_after_its_commit(api, make_token, bearer, celery_worker):
    headers = bearer(make_token(scopes=["memory"]))
    response = api.post(
        "/internal/agent-memory/store",
        headers=headers,
        json={"agent_id": AGENT, "microdao_id": DAO, "kind": "kb", "content": {"text": "embedded via the API"}},
    )
    assert response.status_code == 201
    entry_id = response.json()["id"]
    _wait(lambda: _statuses([entry_id]) == {EmbeddingStatus.READY}, what="embedding of an API store")
    assert api.get(f"/internal/agent-memory/{entry_id}", headers=headers).json()["embedding_status"] == "ready"


def test_the_enqueue_names_and_queues_are_the_tasks():
    """Services send tasks by name (apps/memory/enqueue.py): each name is a registered task on the
    queue it is sent to, and no module of the services package (summaries included) imports tasks.py."""
    import ast
    from pathlib import Path

    from apps.memory import enqueue, tasks
    from daarion.celery import Queue, app

    for name, queue in (
        (enqueue.EMBED_ENTRIES, Queue.EMBEDDINGS),
        (enqueue.REEMBED, Queue.EMBEDDINGS),
        (enqueue.SUMMARIZE, Queue.SUMMARIES),
    ):
        assert app.tasks[name].queue == queue
    assert {tasks.embed_entries.name, tasks.reembed.name, tasks.summarize.name} == {
        enqueue.EMBED_ENTRIES,
        enqueue.REEMBED,
        enqueue.SUMMARIZE,
    }
    here = Path(enqueue.__file__).parent
    modules = [here / "enqueue.py", *sorted((here / "services").glob("*.py"))]
    assert here / "services" / "summaries.py" in modules
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "apps.memory.tasks" not in imported, module.name
