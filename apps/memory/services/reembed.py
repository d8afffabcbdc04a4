"""Re-embedding: moving every entry onto a newly activated embedding model, in batches
recorded on a job, run by the worker or by the `reembed` command."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.memory import selectors
from apps.memory.choices import EmbeddingStatus, JobKind, JobStatus
from apps.memory.enqueue import enqueue_reembed
from apps.memory.models import MemoryEntry, MemoryJob
from apps.memory.services.embedding import EMBED_BATCH, memory_embed_entries
from apps.memory.services.embedding_models import embedding_model_activate
from apps.memory.services.jobs import memory_job_finish


def memory_ids_needing_model(*, model_name: str, limit: int, after_id: str = "") -> list[str]:
    return list(
        MemoryEntry.objects.filter(id__gt=after_id)
        .exclude(embedding_model=model_name, embedding_status=EmbeddingStatus.READY)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def reembed_start(*, model_name: str, enqueue: bool = True) -> MemoryJob:
    """Activates `model_name` and creates a job that moves every entry onto it, run by the
    worker (`enqueue`) or by the caller through `reembed_run`.
    """
    embedding_model_activate(name=model_name)
    with transaction.atomic():
        total = MemoryEntry.objects.exclude(embedding_model=model_name, embedding_status=EmbeddingStatus.READY).count()
        job = MemoryJob.objects.create(
            kind=JobKind.REEMBED, params={"model": model_name}, result={"done": 0, "failed": 0, "total": total}
        )
        job_id = job.id
        if not enqueue:
            return job

        transaction.on_commit(lambda: enqueue_reembed(job_id))
    return job


def reembed_run(*, job_id: str, budget_batches: int | None = None) -> MemoryJob:
    """Re-embeds in batches until done (or `budget_batches` ran), recording progress on the
    job. Stops early if another model was activated meanwhile.
    """
    job = selectors.memory_job_get(job_id=job_id)
    model_name = job.params["model"]
    spec = selectors.model_spec(model_name)
    total = int((job.result or {}).get("total", 0))
    MemoryJob.objects.filter(id=job_id).update(status=JobStatus.RUNNING, updated_at=timezone.now())
    done = int((job.result or {}).get("done", 0))
    failed = int((job.result or {}).get("failed", 0))
    after = str((job.result or {}).get("cursor", ""))
    batches = 0
    while budget_batches is None or batches < budget_batches:
        if selectors.active_model_name_now() != model_name:
            return memory_job_finish(
                job_id=job_id,
                status=JobStatus.FAILED,
                result={"done": done, "failed": failed, "total": total},
                error=f"{model_name} is no longer the active model",
            )
        ids = memory_ids_needing_model(model_name=model_name, limit=EMBED_BATCH, after_id=after)
        if not ids:
            return memory_job_finish(
                job_id=job_id, status=JobStatus.SUCCEEDED, result={"done": done, "failed": failed, "total": total}, error=""
            )
        counts = memory_embed_entries(entry_ids=ids, spec=spec)
        done += counts["embedded"]
        failed += counts["failed"]
        after = ids[-1]
        batches += 1
        MemoryJob.objects.filter(id=job_id).update(
            result={"done": done, "failed": failed, "total": total, "cursor": after}, updated_at=timezone.now()
        )
    return selectors.memory_job_get(job_id=job_id)
