"""Summaries: a job condenses a scope's conversation memories through the LLM proxy's
gateway (in-process, the configured logical model) into one `summary` entry linking them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.memory import selectors
from apps.memory.choices import JobKind, JobStatus, MemoryKind
from apps.memory.enqueue import enqueue_summarize
from apps.memory.models import MemoryEntry, MemoryJob
from apps.memory.services.jobs import memory_job_fail, memory_job_finish
from apps.memory.services.store import memory_store
from daarion.infra.errors import DaarionError

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You condense an AI agent's conversation memories into a short summary the agent will "
    "read later. Keep names, dates, numbers, decisions, commitments and open questions; drop "
    "small talk. Write plain sentences or bullet points, in the language of the conversation."
)


class SummaryTransientError(Exception):
    """The LLM was unreachable or rate limited: the task retries."""


def summary_enqueue(
    *,
    agent_id: str,
    microdao_id: str,
    channel_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    max_entries: int = 100,
) -> MemoryJob:
    params = {
        "microdao_id": microdao_id,
        "channel_id": channel_id,
        "model": model or settings.MEMORY_SUMMARY_MODEL,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "max_entries": max_entries,
    }
    with transaction.atomic():
        job = MemoryJob.objects.create(kind=JobKind.SUMMARIZE, agent_id=agent_id, params=params)
        job_id = job.id

        def _send() -> None:
            try:
                enqueue_summarize(job_id, retry=False)
            except Exception as exc:  # noqa: BLE001 - the caller sees the job fail, not a 500
                logger.warning("could not enqueue summary job", exc_info=True)
                memory_job_fail(job_id=job_id, error=f"could not enqueue: {exc}")

        transaction.on_commit(_send)
    return job


def _sources(job: MemoryJob) -> list[MemoryEntry]:
    p = job.params
    qs = selectors.memory_scope(
        agent_id=job.agent_id,
        microdao_id=p["microdao_id"],
        channel_id=p.get("channel_id"),
        kinds=[MemoryKind.CONVERSATION],
        since=datetime.fromisoformat(p["since"]) if p.get("since") else None,
        until=datetime.fromisoformat(p["until"]) if p.get("until") else None,
    ).defer("embedding")
    # The most recent ones, read oldest first.
    return list(reversed(qs.order_by("-occurred_at", "-id")[: int(p.get("max_entries", 100))]))


def summary_run(*, job_id: str) -> MemoryJob:
    job = selectors.memory_job_get(job_id=job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return job  # a redelivered task: the work is done
    MemoryJob.objects.filter(id=job_id).update(status=JobStatus.RUNNING, updated_at=timezone.now())
    sources = _sources(job)
    if not sources:
        return memory_job_finish(job_id=job_id, status=JobStatus.SUCCEEDED, result={"summary_id": None, "sources": []}, error="")
    try:
        from apps.llm.gateway import chat_completion_sync
    except ImportError:
        return memory_job_finish(job_id=job_id, status=JobStatus.FAILED, result=None, error="the LLM gateway is not available")
    transcript = "\n".join(f"[{e.occurred_at:%Y-%m-%d %H:%M}] {e.text}" for e in sources)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Conversation memories of {job.agent_id}:\n\n{transcript}\n\nSummary:"},
    ]
    try:
        result = chat_completion_sync(
            model=job.params["model"],
            messages=messages,
            agent_id=job.agent_id,
            microdao_id=job.params["microdao_id"],
        )
    except DaarionError as exc:
        if exc.status == 429 or exc.status >= 500:
            raise SummaryTransientError(f"{exc.type}: {exc.message}") from exc
        return memory_job_finish(job_id=job_id, status=JobStatus.FAILED, result=None, error=f"{exc.type}: {exc.message}")
    text = (result.content or "").strip()
    if not text:
        return memory_job_finish(job_id=job_id, status=JobStatus.FAILED, result=None, error="the model returned an empty summary")
    ids = [e.id for e in sources]
    # The model that answered: after a fallback it is not the one asked for.
    answered = getattr(result, "model_resolved", "") or job.params["model"]
    meta = {
        "sources": ids,
        "model": answered,
        "job_id": job_id,
        "from": sources[0].occurred_at.isoformat(),
        "to": sources[-1].occurred_at.isoformat(),
    }
    if answered != job.params["model"]:
        meta["requested_model"] = job.params["model"]
    if getattr(result, "upstream_model", ""):
        meta["upstream_model"] = result.upstream_model
    entry, _ = memory_store(
        agent_id=job.agent_id,
        microdao_id=job.params["microdao_id"],
        channel_id=job.params.get("channel_id"),
        kind=MemoryKind.SUMMARY,
        content={"text": text},
        meta=meta,
        idempotency_key=f"summary:{job_id}",
        occurred_at=sources[-1].occurred_at,
    )
    usage = getattr(result, "usage", None)
    if usage is not None and not isinstance(usage, dict):
        usage = getattr(usage, "__dict__", None) or None
    return memory_job_finish(
        job_id=job_id, status=JobStatus.SUCCEEDED, result={"summary_id": entry.id, "sources": ids, "usage": usage}, error=""
    )
