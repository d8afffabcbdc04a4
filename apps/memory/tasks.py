"""Celery tasks of apps.memory: embedding (queue `embeddings`), summaries and re-embedding.

Tasks take ids, reload rows and call services; they are safe to run twice.
"""

from __future__ import annotations

import logging

from django.conf import settings

from apps.memory import services
from apps.memory.embeddings import TransientEmbeddingError
from daarion.celery import Queue, app

logger = logging.getLogger(__name__)

EMBED_MAX_RETRIES = settings.MEMORY_EMBED_MAX_RETRIES
RETRY_BASE_SECONDS = settings.MEMORY_RETRY_BASE_SECONDS


def _backoff(retries: int) -> float:
    return min(RETRY_BASE_SECONDS * (2**retries), 600.0)


@app.task(
    name="memory.embed_entries", queue=Queue.EMBEDDINGS, bind=True, acks_late=True,
    reject_on_worker_lost=True, max_retries=EMBED_MAX_RETRIES,
)
def embed_entries(self, entry_ids: list[str]) -> dict[str, int]:
    try:
        return services.memory_embed_entries(entry_ids=entry_ids)
    except TransientEmbeddingError as exc:
        if self.request.retries >= self.max_retries:
            failed = services.memory_mark_failed(entry_ids=entry_ids, reason=f"gave up after {self.request.retries} retries: {exc}")
            logger.warning("embedding gave up", extra={"entries": len(entry_ids), "failed": failed})
            return {"embedded": 0, "failed": failed}
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))


@app.task(name="memory.requeue_pending", queue=Queue.EMBEDDINGS, acks_late=True, expires=300)
def requeue_pending() -> int:
    """Beat: entries whose embedding task was lost (broker down, worker killed) go again."""
    return services.memory_requeue_pending()


@app.task(
    name="memory.reembed", queue=Queue.EMBEDDINGS, bind=True, acks_late=True,
    reject_on_worker_lost=True, max_retries=EMBED_MAX_RETRIES,
)
def reembed(self, job_id: str) -> str:
    # Runs in slices and re-enqueues itself, so a long re-embed never meets the task time
    # limit and other embedding work interleaves with it.
    try:
        job = services.reembed_run(job_id=job_id, budget_batches=20)
    except TransientEmbeddingError as exc:
        if self.request.retries >= self.max_retries:
            services.memory_job_fail(job_id=job_id, error=str(exc))
            return "failed"
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))
    if job.status == "running":
        reembed.apply_async(args=[job_id], ignore_result=True)
    return job.status


@app.task(
    name="memory.summarize", queue=Queue.SUMMARIES, bind=True, acks_late=True,
    reject_on_worker_lost=True, max_retries=3,
)
def summarize(self, job_id: str) -> str:
    from apps.memory.summaries import SummaryTransientError, summary_run

    try:
        return summary_run(job_id=job_id).status
    except SummaryTransientError as exc:
        if self.request.retries >= self.max_retries:
            services.memory_job_fail(job_id=job_id, error=str(exc))
            return "failed"
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))
