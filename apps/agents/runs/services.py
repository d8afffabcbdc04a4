"""Writes of runs: start (with the session's strategy and the idempotency key), begin, finish,
cancel, and the sweep that interrupts runs whose executor died.

Every write that looks at a session's runs holds a transaction-scoped advisory lock on the
session, so starting a run, beginning one and finishing one are serialized per session: two
first messages cannot both start, and a finishing run always sees (and dispatches) the run
queued behind it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.agents.choices import RunStatus, RunStrategy
from apps.agents.models import Run
from apps.agents.pipeline import in_db_thread
from apps.agents.pipeline.prepare import session_owner
from apps.agents.runs.chunks import chunks_all, chunks_close
from apps.agents.runs.lease import lease_held
from apps.agents.runs.message import MessageBuilder
from apps.agents.runs.selectors import arun_get, run_get
from daarion.infra.errors import Conflict, ValidationFailed
from daarion.infra.outages import RuntimeUnavailable
from daarion.infra.redis_client import get_async_redis, key

logger = logging.getLogger(__name__)


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex}"


def cancel_key(run_id: str) -> str:
    return key("agents", "run", run_id, "cancel")


def _lock_session(session_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"agents-session:{session_id}"])


def run_dispatch(run_id: str) -> None:
    """Sends the run's task to the `agents` queue. A failure is logged, not raised: the run
    stays queued and the sweep sends it again (AGENTS_RUN_REDISPATCH_SECONDS)."""
    from apps.agents.tasks import execute_run

    try:
        execute_run.apply_async((run_id,), queue=settings.AGENTS_RUN_QUEUE, retry=False)
    except Exception:  # noqa: BLE001 - the broker is down; the sweep re-sends queued runs
        logger.warning("could not enqueue the run; the sweep will", extra={"run_id": run_id}, exc_info=True)


def _dispatch_next(session_id: str) -> None:
    """Within the session lock: the oldest queued run of the session goes, unless one runs."""
    if Run.objects.filter(session_id=session_id, status=RunStatus.RUNNING).exists():
        return
    head = Run.objects.filter(session_id=session_id, status=RunStatus.QUEUED).order_by("created_at").first()
    if head is None:
        return
    Run.objects.filter(pk=head.pk).update(dispatched_at=timezone.now())
    transaction.on_commit(lambda: run_dispatch(head.pk))


def _same_request(run: Run, *, session_id: str, request: dict[str, Any]) -> bool:
    return run.session_id == session_id and run.request.get("message") == request.get("message")


def run_start(
    *,
    agent_id: str,
    session_id: str,
    request: dict[str, Any],
    strategy: str = RunStrategy.REJECT,
    idempotency_key: str | None = None,
    request_id: str = "",
    token_name: str = "",
) -> tuple[Run, bool]:
    """Creates the run and dispatches it (or queues it behind the session's active run).

    Returns (run, created). An idempotency key already used by this agent returns that run
    (created False) when the request is the same, else 422 `idempotency_key_reused`. A
    session of another agent (by its transcript or its runs) is 409 `session_agent_mismatch`. While
    another run of the session is active, `reject` is 409 `run_in_progress` and `enqueue`
    queues the run behind it.
    """
    if strategy not in RunStrategy.values:
        raise ValidationFailed(
            f"strategy must be one of {RunStrategy.values}", details=[{"path": "strategy", "message": "unknown strategy"}]
        )
    try:
        with transaction.atomic():
            _lock_session(session_id)
            if idempotency_key:
                existing = Run.objects.filter(agent_id=agent_id, idempotency_key=idempotency_key).first()
                if existing is not None:
                    return _replayed(existing, session_id=session_id, request=request), False
            owner = session_owner(session_id)
            if (owner is not None and owner != agent_id) or Run.objects.filter(session_id=session_id).exclude(
                agent_id=agent_id
            ).exists():
                raise Conflict(
                    f"session {session_id!r} belongs to another agent",
                    type="session_agent_mismatch",
                    details={"session_id": session_id},
                )
            active = Run.objects.filter(session_id=session_id, status__in=RunStatus.active()).order_by("created_at").first()
            if active is not None and strategy == RunStrategy.REJECT:
                raise Conflict(
                    f"session {session_id!r} has a run in progress ({active.pk}); wait for it, or send with "
                    "strategy 'enqueue' to run after it",
                    type="run_in_progress",
                    details={"run_id": active.pk, "session_id": session_id},
                )
            run = Run.objects.create(
                id=new_run_id(),
                agent_id=agent_id,
                session_id=session_id,
                request=request,
                strategy=strategy,
                idempotency_key=idempotency_key or None,
                request_id=request_id or "",
                token_name=token_name or "",
                dispatched_at=None if active is not None else timezone.now(),
            )
            if active is None:
                transaction.on_commit(lambda: run_dispatch(run.pk))
            return run, True
    except IntegrityError:
        # The same key sent twice at once for two sessions: the other request won the insert.
        existing = Run.objects.filter(agent_id=agent_id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _replayed(existing, session_id=session_id, request=request), False


def _replayed(run: Run, *, session_id: str, request: dict[str, Any]) -> Run:
    if not _same_request(run, session_id=session_id, request=request):
        raise ValidationFailed(
            "this Idempotency-Key was used for another request (another message or session)",
            type="idempotency_key_reused",
            details=[{"path": "Idempotency-Key", "message": f"already names run {run.pk}"}],
        )
    return run


# queued -> running in one statement: only a queued run, and only when no earlier run of its
# session is still active. It needs no session lock: a run finishing at the same moment
# dispatches this one again once it has committed, and a second begin finds it not queued.
_BEGIN_SQL = f"""
UPDATE {Run._meta.db_table} AS run SET status = %s, started_at = %s, executor = %s
WHERE run.id = %s AND run.status = %s AND NOT EXISTS (
    SELECT 1 FROM {Run._meta.db_table} AS ahead
    WHERE ahead.session_id = run.session_id AND ahead.status = ANY(%s) AND ahead.created_at < run.created_at
)
RETURNING run.*
"""


def run_begin(*, run_id: str, executor: str) -> Run | None:
    """queued -> running, if the run is queued and first in its session; else None (a
    duplicated or redelivered task, or a run whose turn has not come)."""
    runs = list(
        Run.objects.raw(
            _BEGIN_SQL,
            [RunStatus.RUNNING.value, timezone.now(), executor[:200], run_id, RunStatus.QUEUED.value, list(RunStatus.active())],
        )
    )
    return runs[0] if runs else None


def run_finish(
    *,
    run_id: str,
    status: str,
    message: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    step_count: int = 0,
    error: dict[str, Any] | None = None,
    from_statuses: tuple[str, ...] = (RunStatus.RUNNING,),
) -> bool:
    """Ends the run (only from `from_statuses`: an end is final) and dispatches the next run
    queued on its session. False when the run was not in one of those states."""
    session_id = Run.objects.filter(pk=run_id).values_list("session_id", flat=True).first()
    if session_id is None:
        return False
    with transaction.atomic():
        _lock_session(session_id)
        changes: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error, "step_count": step_count}
        if message is not None:
            changes["message"] = message
        if result is not None:
            changes["result"] = result
        if usage is not None:
            changes["usage"] = usage
        if not Run.objects.filter(pk=run_id, status__in=from_statuses).update(**changes):
            return False
        _dispatch_next(session_id)
        return True


def _cancelled_chunks(run: Run) -> list[dict[str, Any]]:
    meta = {"agent_id": run.agent_id, "session_id": run.session_id, "run_id": run.pk}
    return [
        {"type": "start", "messageId": run.pk, "messageMetadata": meta},
        {"type": "finish", "messageMetadata": {"finish_reason": "cancelled"}},
    ]


async def arun_cancel(*, run: Run) -> Run:
    """Stops the run: a queued run ends at once; a running one is flagged, and its executor
    stops at the next chunk boundary, keeping the partial answer. 409 for an ended run."""
    if run.ended:
        raise Conflict(
            f"run {run.pk} has ended ({run.status})", type="run_not_active", details={"run_id": run.pk, "status": run.status}
        )
    error = {"type": "run_cancelled", "message": "the run was cancelled", "status": 409}
    cancelled = await in_db_thread(run_finish)(
        run_id=run.pk,
        status=RunStatus.CANCELLED,
        error=error,
        from_statuses=(RunStatus.QUEUED,),
        message={"id": run.pk, "role": "assistant", "parts": [], "metadata": {"finish_reason": "cancelled"}},
    )
    if cancelled:
        await chunks_close(run.pk, _cancelled_chunks(run))
    else:
        await get_async_redis().set(cancel_key(run.pk), b"1", ex=max(60, int(settings.AGENTS_RUN_TIME_LIMIT_SECONDS)))
    return await in_db_thread(run_get)(run_id=run.pk)


async def arun_await_start(*, run: Run, timeout: float) -> None:
    """Waits until a worker has taken the run (it left `queued`), for a caller that waits on
    its answer. None there within `timeout` means no worker of the queue is alive: the run is
    ended `interrupted` (it must not run later, after its caller gave up) and 503
    `runtime_unavailable` is raised. A run queued behind another of its session is waiting its
    turn, not for a worker: it is not timed."""
    if run.status != RunStatus.QUEUED or run.dispatched_at is None:
        return
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + timeout, 0.02
    while loop.time() < deadline:
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 0.5)
        if (await arun_get(run_id=run.pk)).status != RunStatus.QUEUED:
            return
    error: dict[str, Any] = {
        "type": RuntimeUnavailable.type,
        "status": 503,
        "message": f"no worker took the run within {timeout:g} s; the agents queue has no live worker",
    }
    if not await in_db_thread(run_finish)(
        run_id=run.pk, status=RunStatus.INTERRUPTED, error=error, from_statuses=(RunStatus.QUEUED,)
    ):
        return  # a worker took it at the last moment
    await chunks_close(
        run.pk,
        [
            {"type": "error", "errorText": f"{error['type']}: {error['message']}"},
            {"type": "finish", "messageMetadata": {"finish_reason": "interrupted"}},
        ],
    )
    logger.warning("run not taken by any worker", extra={"run_id": run.pk})
    raise RuntimeUnavailable(
        error["message"], details={"run_id": run.pk}, headers={"Retry-After": str(settings.OUTAGE_RETRY_AFTER_SECONDS)}
    )


async def arun_interrupt(*, run_id: str, type: str, message: str) -> bool:
    """Ends a run whose executor is gone: `interrupted`, with the partial message folded from
    its stream, and an `error` and a `finish` chunk so every reader ends cleanly."""
    builder = MessageBuilder()
    for chunk in await chunks_all(run_id):
        builder.add(chunk)
    partial = builder.message if builder.message["id"] else None
    error = {"type": type, "message": message, "status": 503}
    done = await in_db_thread(run_finish)(
        run_id=run_id,
        status=RunStatus.INTERRUPTED,
        message=partial,
        error=error,
    )
    if done:
        closing = [{"type": "text-end", "id": text_id} for text_id in builder.open_text_ids]
        await chunks_close(
            run_id,
            [
                *closing,
                {"type": "error", "errorText": f"{type}: {message}"},
                {"type": "finish", "messageMetadata": {"finish_reason": "interrupted"}},
            ],
        )
        logger.warning("run interrupted", extra={"run_id": run_id, "reason": type})
    return done


def _sweep_candidates() -> tuple[list[tuple[str, Any]], list[str]]:
    now = timezone.now()
    running = list(Run.objects.filter(status=RunStatus.RUNNING).values_list("id", "started_at"))
    stale = now - timedelta(seconds=settings.AGENTS_RUN_REDISPATCH_SECONDS)
    queued = Run.objects.filter(status=RunStatus.QUEUED, dispatched_at__lt=stale).order_by("created_at")
    # Only heads of their sessions: a run behind an active one is dispatched when it ends.
    heads = [
        r.pk
        for r in queued[:200]
        if not Run.objects.filter(session_id=r.session_id, status__in=RunStatus.active(), created_at__lt=r.created_at).exists()
    ]
    return running, heads


def _mark_redispatched(run_ids: list[str]) -> None:
    Run.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED).update(dispatched_at=timezone.now())


async def aruns_sweep() -> dict[str, int]:
    """Interrupts running runs whose lease ran out (their worker died) or that outlived the
    time limit, and re-sends queued runs whose task never started. Beat runs it."""
    running, heads = await in_db_thread(_sweep_candidates)()
    now = timezone.now()
    grace = timedelta(seconds=settings.AGENTS_RUN_LEASE_SECONDS)
    limit = timedelta(seconds=settings.AGENTS_RUN_TIME_LIMIT_SECONDS) + grace
    interrupted = 0
    for run_id, started_at in running:
        started_at = started_at or now
        if now - started_at > limit:
            interrupted += await arun_interrupt(run_id=run_id, type="run_time_limit", message="the run outlived its time limit")
        elif now - started_at > grace and not await lease_held(run_id):
            interrupted += await arun_interrupt(
                run_id=run_id, type="run_interrupted", message="the worker running this turn stopped; the run did not finish"
            )
    if heads:
        await in_db_thread(_mark_redispatched)(heads)
        for run_id in heads:
            run_dispatch(run_id)
    return {"interrupted": interrupted, "redispatched": len(heads)}
