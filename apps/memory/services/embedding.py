"""Embedding memories: queueing entries for the worker, embedding them with the active model
(a task's work), and the failures, requeues and retries around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.memory import selectors
from apps.memory.choices import EmbeddingStatus
from apps.memory.embeddings import EmbeddingError, ModelSpec, TransientEmbeddingError, get_embedder
from apps.memory.enqueue import enqueue_embed_entries
from apps.memory.models import MemoryEntry
from daarion.observability.metrics import observe_embedded

logger = logging.getLogger(__name__)

EMBED_BATCH = settings.MEMORY_EMBED_BATCH


def memory_embedding_enqueue(*, entry_ids: list[str]) -> None:
    """After commit, hand the ids to the embeddings queue. A broker outage only delays the
    embedding: the entries stay `pending` and the periodic requeue picks them up.
    """
    if not entry_ids:
        return

    def _send() -> None:
        for start in range(0, len(entry_ids), EMBED_BATCH):
            try:
                enqueue_embed_entries(entry_ids[start : start + EMBED_BATCH], retry=False)
            except Exception:  # noqa: BLE001 - the entries are safe; requeue_pending retries
                logger.warning("could not enqueue embeddings; they stay pending", exc_info=True)
                return

    transaction.on_commit(_send)


def _embed_and_save(spec: ModelSpec, entries: list[MemoryEntry]) -> int:
    vectors = get_embedder(spec).embed([e.text for e in entries], purpose="document")
    if len(vectors) != len(entries) or any(len(v) != spec.dimensions for v in vectors):
        raise EmbeddingError(f"{spec.name} returned vectors of the wrong shape (expected {spec.dimensions} dimensions)")
    now = timezone.now()
    with transaction.atomic():
        # An update may have changed a text while the model ran: its vector would describe
        # the old text. Such entries are skipped; the update queued their embedding again.
        current = dict(MemoryEntry.objects.select_for_update().filter(id__in=[e.id for e in entries]).values_list("id", "text"))
        kept = []
        for entry, vector in zip(entries, vectors):
            if current.get(entry.id) != entry.text:
                continue
            entry.embedding = vector
            entry.embedding_model = spec.name
            entry.embedding_status = EmbeddingStatus.READY
            entry.embedding_error = ""
            entry.embedded_at = now
            kept.append(entry)
        MemoryEntry.objects.bulk_update(
            kept, ["embedding", "embedding_model", "embedding_status", "embedding_error", "embedded_at"]
        )
    observe_embedded("ready", len(kept))
    return len(kept)


def memory_embed_entries(*, entry_ids: Sequence[str], spec: ModelSpec | None = None) -> dict[str, int]:
    """Embeds the given entries with the active model, skipping those already done
    (so a task that runs twice does no harm). Transient errors propagate for the task to
    retry; permanent ones mark the entry `failed` with the reason.
    """
    spec = spec or selectors.active_model_spec()
    entries = [
        e
        for e in MemoryEntry.objects.filter(id__in=list(entry_ids)).only("id", "text", "embedding_model", "embedding_status")
        if not (e.embedding_status == EmbeddingStatus.READY and e.embedding_model == spec.name)
    ]
    if not entries:
        return {"embedded": 0, "failed": 0}
    try:
        return {"embedded": _embed_and_save(spec, entries), "failed": 0}
    except TransientEmbeddingError:
        raise
    except EmbeddingError as exc:
        if len(entries) == 1:
            memory_mark_failed(entry_ids=[entries[0].id], reason=str(exc))
            return {"embedded": 0, "failed": 1}
    # One bad entry must not fail its batch: try each alone.
    done = failed = 0
    for entry in entries:
        try:
            done += _embed_and_save(spec, [entry])
        except TransientEmbeddingError:
            raise
        except EmbeddingError as exc:
            memory_mark_failed(entry_ids=[entry.id], reason=str(exc))
            failed += 1
    return {"embedded": done, "failed": failed}


def memory_mark_failed(*, entry_ids: Sequence[str], reason: str) -> int:
    failed = (
        MemoryEntry.objects.filter(id__in=list(entry_ids))
        .exclude(embedding_status=EmbeddingStatus.READY)
        .update(embedding_status=EmbeddingStatus.FAILED, embedding_error=reason[:2000])
    )
    observe_embedded("failed", failed)
    return failed


def memory_pending_ids(*, older_than_seconds: float, limit: int) -> list[str]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        MemoryEntry.objects.filter(embedding_status=EmbeddingStatus.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def memory_requeue_pending(*, older_than_seconds: float = 30.0, limit: int = 5000) -> int:
    """Re-enqueues entries still `pending` (their task was lost: broker down, worker killed)."""
    ids = memory_pending_ids(older_than_seconds=older_than_seconds, limit=limit)
    for start in range(0, len(ids), EMBED_BATCH):
        enqueue_embed_entries(ids[start : start + EMBED_BATCH])
    return len(ids)


def memory_retry_failed(*, entry_ids: Sequence[str]) -> int:
    """Puts failed (or any) entries back to `pending` and enqueues them (admin action)."""
    ids = list(entry_ids)
    with transaction.atomic():
        count = MemoryEntry.objects.filter(id__in=ids).update(embedding_status=EmbeddingStatus.PENDING, embedding_error="")
        memory_embedding_enqueue(entry_ids=ids)
    return count
