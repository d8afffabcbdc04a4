"""Memory jobs (re-embedding, summaries): how a job's row ends, succeeded or failed."""

from __future__ import annotations

from django.utils import timezone

from apps.memory import selectors
from apps.memory.choices import JobStatus
from apps.memory.models import MemoryJob


def memory_job_finish(*, job_id: str, status: str, result: dict | None, error: str) -> MemoryJob:
    """Ends a job with `status`, its `result` and the reason it failed (`error`, "" if none)."""
    MemoryJob.objects.filter(id=job_id).update(
        status=status, result=result, error=error[:4000], finished_at=timezone.now(), updated_at=timezone.now()
    )
    return selectors.memory_job_get(job_id=job_id)


def memory_job_fail(*, job_id: str, error: str) -> MemoryJob:
    job = selectors.memory_job_get(job_id=job_id)
    return memory_job_finish(job_id=job_id, status=JobStatus.FAILED, result=job.result or {}, error=error)
