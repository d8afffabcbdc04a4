"""Reads of runs: one run, a page of an agent's runs, and a run's stream as SSE events for
any web process (followed live from Redis, or replayed from the row once it expired)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.agents.choices import RunStatus
from apps.agents.models import Run
from apps.agents.pipeline import in_db_thread
from apps.agents.runs.chunks import (
    ENTRY_ID_RE,
    chunks_exist,
    chunks_follow,
    chunks_state,
)
from apps.agents.runs.message import replay_chunks
from daarion.infra import sse
from daarion.infra.errors import NotFound, ValidationFailed


def run_get(*, run_id: str) -> Run:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"run {run_id!r} not found", type="run_not_found", details={"run_id": run_id})
    return run


async def arun_get(*, run_id: str) -> Run:
    return await in_db_thread(run_get)(run_id=run_id)


def session_active_run(*, agent_id: str, session_id: str) -> Run | None:
    """The session's oldest active run (the one streaming now, or next)."""
    return (
        Run.objects.filter(agent_id=agent_id, session_id=session_id, status__in=RunStatus.active()).order_by("created_at").first()
    )


def _cursor(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.created_at.isoformat()}|{run.pk}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not one this API gave out", details=[{"path": "cursor", "message": "invalid cursor"}]
        ) from None


def runs_list(
    *, agent_id: str, session_id: str | None = None, status: str | None = None, limit: int = 20, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """The agent's runs, newest first; the cursor names the next page (None: no more)."""
    runs = Run.objects.filter(agent_id=agent_id)
    if session_id:
        runs = runs.filter(session_id=session_id)
    if status:
        runs = runs.filter(status=status)
    if cursor:
        created, run_id = _parse_cursor(cursor)
        runs = runs.filter(created_at__lte=created).exclude(created_at=created, pk__gte=run_id)
    page = list(runs.order_by("-created_at", "-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (_cursor(page[-1]) if more and page else None)


def parse_last_event_id(value: str | None) -> str:
    """The entry id after which a reader resumes ('0-0': from the start); 422 if malformed."""
    if value is None or value == "":
        return "0-0"
    value = value.strip()
    if not ENTRY_ID_RE.match(value):
        raise ValidationFailed(
            "Last-Event-ID must be an id this stream sent (like 1733400000000-0)",
            details=[{"path": "Last-Event-ID", "message": "not a stream entry id"}],
        )
    return value


def _replay(run: Run, after: str) -> list[bytes]:
    """The stored message as SSE events (ids `0-<n>`), after `after` when it is one of them."""
    error_text = None
    if run.status in (RunStatus.FAILED, RunStatus.INTERRUPTED) and run.error:
        error_text = f"{run.error.get('type')}: {run.error.get('message')}"
    chunks = replay_chunks(run.message, error_text=error_text)
    skip = int(after.split("-")[1]) if after.startswith("0-") else 0
    if not after.startswith("0-"):
        # A reader that had live entries of a stream that has since expired.
        return [
            sse.event(
                {"type": "error", "errorText": f"run_stream_expired: GET /internal/agents/runs/{run.pk} has the final message"}
            )
        ]
    return [sse.event(chunk, event_id=f"0-{n}") for n, chunk in enumerate(chunks, start=1) if n > skip]


async def run_sse(run_id: str, *, after: str = "0-0") -> AsyncIterator[bytes]:
    """The run's SSE body: every chunk after `after` (each with its `id:`), heartbeats while
    the run is quiet, and `[DONE]` once it has ended. Closing it leaves the run running."""
    if not await chunks_exist(run_id):
        run = await arun_get(run_id=run_id)
        if run.ended:
            for event in _replay(run, after):
                yield event
            yield sse.DONE
            return
    async for entry in chunks_follow(run_id, after=after, idle_seconds=settings.AGENTS_STREAM_HEARTBEAT_SECONDS):
        if entry.idle:
            yield sse.HEARTBEAT  # the blocking read timed out: the run is quiet
            state = await chunks_state(run_id)
            if state == "ended":
                break  # a reader that started after the end marker's id (another run's id)
            if state == "missing":
                # Expired, or lost with Redis: the row is the record.
                run = await arun_get(run_id=run_id)
                if run.ended:
                    for event in _replay(run, after):
                        yield event
                    break
            continue
        if entry.end:
            break
        assert entry.chunk is not None
        yield sse.event(entry.chunk, event_id=entry.id)
    yield sse.DONE


async def run_wait(run_id: str) -> Run:
    """Waits until the run has ended (its stream's end marker, or the row) and returns it."""
    async for entry in chunks_follow(run_id, idle_seconds=settings.AGENTS_STREAM_HEARTBEAT_SECONDS):
        if entry.end:
            break
        if entry.idle and await chunks_state(run_id) == "missing" and (await arun_get(run_id=run_id)).ended:
            break
    return await arun_get(run_id=run_id)


def run_out(run: Run) -> dict[str, Any]:
    """The run as the API shows it."""
    duration = None
    if run.started_at and run.finished_at:
        duration = (run.finished_at - run.started_at).total_seconds()
    return {
        "id": run.pk,
        "agent_id": run.agent_id,
        "session_id": run.session_id,
        "status": run.status,
        "strategy": run.strategy,
        "message": run.message,
        "reply": (run.result or {}).get("reply"),
        "usage": run.usage or {},
        "step_count": run.step_count,
        "error": run.error,
        "idempotency_key": run.idempotency_key,
        "request_id": run.request_id or None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_seconds": duration,
    }
