"""Celery tasks of apps.memory: embedding (queue `embeddings`), summaries and re-embedding.

Tasks take ids, reload rows and call services; they are safe to run twice.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.conf import settings

from apps.memory import services
from apps.memory.embeddings import TransientEmbeddingError
from apps.memory.enqueue import EMBED_ENTRIES, REEMBED, SUMMARIZE, enqueue_reembed
from daarion.celery import Queue, app

logger = logging.getLogger(__name__)

EMBED_MAX_RETRIES = settings.MEMORY_EMBED_MAX_RETRIES

# A transient error (the embedder or the LLM answered 429/5xx, or could not be reached) is retried
# by Celery (autoretry_for) after MEMORY_RETRY_BASE_SECONDS x 2^n seconds, at most 600 (Celery
# takes the base in whole seconds, at least 1). The last attempt does not raise: it gives up in
# the task's own terms (the entries or the job are marked failed with the reason), so every
# task ends with its rows settled, whatever happened upstream.
_BACKOFF = max(1, int(settings.MEMORY_RETRY_BASE_SECONDS))

# What every retrying task of memory shares: it is bound (to see its retries), acknowledged
# after it ran, and retried with the backoff above.
_RETRYING: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "retry_backoff": _BACKOFF,
    "retry_backoff_max": 600,
    "retry_jitter": False,
}
_EMBEDDING_RETRIES: dict[str, Any] = {"autoretry_for": (TransientEmbeddingError,), "max_retries": EMBED_MAX_RETRIES}


def _retries_left(task: Task) -> bool:
    """Whether raising now makes Celery retry the task (False on its last attempt)."""
    return task.max_retries is None or task.request.retries < task.max_retries


@app.task(name=EMBED_ENTRIES, queue=Queue.EMBEDDINGS, **_EMBEDDING_RETRIES, **_RETRYING)
def embed_entries(self: Task, entry_ids: list[str]) -> dict[str, int]:
    try:
        return services.memory_embed_entries(entry_ids=entry_ids)
    except TransientEmbeddingError as exc:
        if _retries_left(self):
            raise
        failed = services.memory_mark_failed(entry_ids=entry_ids, reason=f"gave up after {self.request.retries} retries: {exc}")
        logger.warning("embedding gave up", extra={"entries": len(entry_ids), "failed": failed})
        return {"embedded": 0, "failed": failed}


@app.task(name="memory.requeue_pending", queue=Queue.EMBEDDINGS, acks_late=True, expires=300)
def requeue_pending() -> int:
    """Beat: entries whose embedding task was lost (broker down, worker killed) go again."""
    return services.memory_requeue_pending()


@app.task(name=REEMBED, queue=Queue.EMBEDDINGS, **_EMBEDDING_RETRIES, **_RETRYING)
def reembed(self: Task, job_id: str) -> str:
    # Runs in slices and re-enqueues itself, so a long re-embed never meets the task time
    # limit and other embedding work interleaves with it.
    try:
        job = services.reembed_run(job_id=job_id, budget_batches=20)
    except TransientEmbeddingError as exc:
        if _retries_left(self):
            raise
        services.memory_job_fail(job_id=job_id, error=str(exc))
        return "failed"
    if job.status == "running":
        enqueue_reembed(job_id)
    return job.status


@app.task(name=SUMMARIZE, queue=Queue.SUMMARIES, autoretry_for=(services.SummaryTransientError,), max_retries=3, **_RETRYING)
def summarize(self: Task, job_id: str) -> str:
    try:
        return services.summary_run(job_id=job_id).status
    except services.SummaryTransientError as exc:
        if _retries_left(self):
            raise
        services.memory_job_fail(job_id=job_id, error=str(exc))
        return "failed"
