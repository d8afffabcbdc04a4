"""Executes one run on a worker: the turn pipeline's events become UI message chunks in the
run's Redis stream, and the final message, answer, usage and status go on the run row.

One executor per run: it takes the run's lease before anything else, and only a queued run
can begin (`run_begin`), so a duplicated or redelivered task does nothing, and a run whose
worker died is never run again (its tool calls never repeat): the sweep marks it
`interrupted` once the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from apps.agents.choices import RunStatus, ToolMode
from apps.agents.models import Run
from apps.agents.pipeline import (
    PreparedTurn,
    TurnCollector,
    TurnFailed,
    TurnFinished,
    TurnInput,
    TurnStarted,
    in_db_thread,
    remember_partial,
    turn_events,
)
from apps.agents.runs.chunks import chunks_append, chunks_close
from apps.agents.runs.history import history_messages
from apps.agents.runs.lease import Lease, leases_renew
from apps.agents.runs.message import MessageBuilder
from apps.agents.runs.services import cancel_key, run_begin, run_finish
from apps.agents.selectors import Blueprint, ablueprint_get, ablueprints_recheck
from apps.llm.selectors import registry_snapshot as llm_registry_snapshot
from apps.agents.stream import UIChunks
from apps.tools.registry import registry_snapshot
from daarion.infra.errors import Conflict, DaarionError
from daarion.observability import metrics, tracing
from daarion.infra.redis_client import get_async_redis

logger = logging.getLogger(__name__)

# How often the executor looks for a cancel request (seconds); a cancel takes effect at the
# next chunk boundary after it is seen.
CANCEL_POLL_SECONDS = 0.2


def _session_entries(session_id: str) -> list[dict[str, Any]]:
    from apps.memory.selectors import transcript_get
    from daarion.infra.errors import NotFound

    try:
        return list(transcript_get(session_id=session_id).entries)
    except NotFound:
        return []


async def _prepare(run: Run, blueprint: Blueprint) -> PreparedTurn:
    request = run.request
    turn = TurnInput(
        agent_id=run.agent_id,
        message=request["message"],
        microdao_id=request.get("microdao_id"),
        channel_id=request.get("channel_id"),
        session_id=run.session_id,
        user_id=request.get("user_id"),
        context=request.get("context") or [],
        request_id=run.request_id or None,
    )
    history: list[dict[str, Any]] = []
    if blueprint.history_turns > 0 and blueprint.history_tokens > 0:
        entries = await in_db_thread(_session_entries)(run.session_id)
        names = (await registry_snapshot.aget()).function_names
        history = history_messages(
            entries,
            max_turns=blueprint.history_turns,
            max_tokens=blueprint.history_tokens,
            text_mode=blueprint.tool_mode == ToolMode.TEXT,
            function_names=names,
        )
    return PreparedTurn(
        turn=turn,
        blueprint=blueprint,
        turn_id=run.pk,
        session_id=run.session_id,
        microdao_id=turn.microdao_id or blueprint.microdao_id,
        history=history,
    )


async def _recheck_registries() -> None:
    """A run sees every edit made before it started: the worker's snapshots (agents, tools,
    models) would otherwise lag the web process that accepted the run by up to a check
    interval. One Redis read each when nothing changed."""
    await asyncio.gather(ablueprints_recheck(), registry_snapshot.aget(recheck=True), llm_registry_snapshot.aget(recheck=True))


class _Watch:
    """A run's flags, set by its process's watcher: a cancel was asked, the lease was lost."""

    def __init__(self, run_id: str, lease: Lease) -> None:
        self.run_id = run_id
        self.lease = lease
        self.cancelled = False
        self.lost = False
        self.renewed_at = time.monotonic()

    @property
    def stop(self) -> bool:
        return self.cancelled or self.lost


class _Watcher:
    """One per event loop (a worker process has one): every CANCEL_POLL_SECONDS one MGET of
    the cancel keys of all the runs it executes, and one script renewing the leases that are
    due by the clock. So 200 runs in flight cost two Redis calls a tick, not 200 (nor 200
    connections opened at once), and a busy loop that wakes late still renews on time rather
    than counting ticks it missed."""

    def __init__(self) -> None:
        self.watches: dict[str, _Watch] = {}
        self.task: asyncio.Task | None = None

    @contextlib.contextmanager
    def watching(self, run_id: str, lease: Lease) -> Iterator[_Watch]:
        watch = self.watches[run_id] = _Watch(run_id, lease)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._loop())
        try:
            yield watch
        finally:
            self.watches.pop(run_id, None)

    async def _loop(self) -> None:
        redis = get_async_redis()
        while self.watches:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            watches = list(self.watches.values())
            if not watches:
                break
            try:
                flags = await redis.mget([cancel_key(w.run_id) for w in watches])
                for watch, flag in zip(watches, flags, strict=True):
                    watch.cancelled = watch.cancelled or flag is not None
            except Exception:  # noqa: BLE001 - a Redis blip: the next tick looks again
                logger.warning("run cancel check failed", exc_info=True)
            now = time.monotonic()
            due = [w for w in watches if now - w.renewed_at >= w.lease.ttl_ms / 3000]
            if not due:
                continue
            try:
                renewed = await leases_renew([w.lease for w in due])
            except Exception:  # noqa: BLE001 - tried again next tick, well inside the leases
                logger.warning("run lease renewal failed", extra={"runs": len(due)}, exc_info=True)
                continue
            for watch, ok in zip(due, renewed, strict=True):
                if ok:
                    watch.renewed_at = now
                else:
                    # Someone else's lease now, or none: the sweep has ended (or will end) the
                    # run, so its executor stops writing to it.
                    watch.lost = True


_watchers: dict[int, _Watcher] = {}


def _watcher() -> _Watcher:
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _watchers:
        _watchers[loop_id] = _Watcher()
    return _watchers[loop_id]


def _crashed(run: Run, exc: BaseException) -> dict[str, Any]:
    logger.error("agent run crashed", extra={"run_id": run.pk, "agent_id": run.agent_id}, exc_info=exc)
    return {"type": "internal_error", "message": "the agent run failed; see the server log", "status": 500}


def _error_dict(error: DaarionError) -> dict[str, Any]:
    return {"type": error.type, "message": error.message, "status": error.status, "details": error.details}


async def execute_run(run_id: str, *, holder: str) -> str:
    """Runs the run if it is queued and its turn has come; returns what happened."""
    lease = Lease(run_id, seconds=settings.AGENTS_RUN_LEASE_SECONDS, holder=holder)
    if not await lease.acquire():
        return "leased-elsewhere"
    try:
        # Watched (the lease renewed) from the moment it is held: a begin that waits for a
        # database connection under load must not outlive the lease.
        with _watcher().watching(run_id, lease) as watch:
            # The registries' recheck (Redis reads) overlaps the begin (a database write).
            run, _ = await asyncio.gather(in_db_thread(run_begin)(run_id=run_id, executor=holder), _recheck_registries())
            if run is None:
                return "not-queued"
            with tracing.span(
                f"invoke_agent {run.agent_id}",
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.id": run.agent_id,
                    "daarion.run_id": run.pk,
                    "gen_ai.conversation.id": run.session_id,
                },
            ) as span:
                status = await _execute(run, watch)
                tracing.set_attributes(span, {"daarion.run.status": status})
                return status
    finally:
        with contextlib.suppress(Exception):
            await lease.release()


async def _execute(run: Run, watch: _Watch) -> str:
    encoder, builder = UIChunks(), MessageBuilder()
    collector: TurnCollector | None = None
    status, error = RunStatus.FAILED, None
    final: list[dict[str, Any]] = []
    prepared: PreparedTurn | None = None

    async def emit(chunks: list[dict[str, Any]]) -> None:
        for chunk in chunks:
            builder.add(chunk)
        await chunks_append(run.pk, chunks)

    limit = asyncio.timeout(settings.AGENTS_RUN_TIME_LIMIT_SECONDS)
    try:
        blueprint = await ablueprint_get(run.agent_id)
        if not blueprint.enabled:
            raise Conflict(f"agent {run.agent_id!r} is disabled", type="agent_disabled")
        # The first chunk goes out before the history is read: readers see the run start.
        await emit(encoder.chunks(TurnStarted(run.pk, blueprint.id, blueprint.version, run.session_id)))
        prepared = await _prepare(run, blueprint)
        collector = TurnCollector(prepared)
        events = turn_events(prepared)
        try:
            async with limit:
                async for event in events:
                    if isinstance(event, TurnStarted):
                        continue  # sent already
                    collector.add(event)
                    await emit(encoder.chunks(event))
                    if isinstance(event, TurnFinished):
                        status = RunStatus.SUCCEEDED
                    elif isinstance(event, TurnFailed):
                        status, error = RunStatus.FAILED, _error_dict(event.error)
                    elif watch.stop:
                        break
        finally:
            await events.aclose()
    except TimeoutError as exc:
        if limit.expired():
            status = RunStatus.INTERRUPTED
            error = {"type": "run_time_limit", "message": "the run outlived its time limit", "status": 504}
        else:  # a timeout of something else inside the run
            status, error = RunStatus.FAILED, _crashed(run, exc)
            final.append({"type": "error", "errorText": f"{error['type']}: {error['message']}"})
    except DaarionError as exc:
        # Refused before the turn began (the agent was deleted or disabled since).
        status, error = RunStatus.FAILED, _error_dict(exc)
        if not builder.message["id"]:
            await emit(
                [
                    {
                        "type": "start",
                        "messageId": run.pk,
                        "messageMetadata": {"agent_id": run.agent_id, "session_id": run.session_id},
                    }
                ]
            )
        final.append({"type": "error", "errorText": f"{exc.type}: {exc.message}"})
    except Exception as exc:  # noqa: BLE001 - the run must end, whatever broke; the log has the trace
        status, error = RunStatus.FAILED, _crashed(run, exc)
        final.append({"type": "error", "errorText": f"{error['type']}: {error['message']}"})
    if status == RunStatus.FAILED and error is None:
        # The pipeline ended without its last event: nothing says why, so say that.
        error = {"type": "internal_error", "message": "the turn ended without an answer", "status": 500}
        final.append({"type": "error", "errorText": f"{error['type']}: {error['message']}"})

    if watch.lost:
        return "lease-lost"
    if watch.cancelled and status not in (RunStatus.SUCCEEDED,):
        status = RunStatus.CANCELLED
        error = {"type": "run_cancelled", "message": "the run was cancelled", "status": 409}
        final = [{"type": "text-end", "id": text_id} for text_id in builder.open_text_ids]
        final.append({"type": "finish", "messageMetadata": {"finish_reason": "cancelled"}})
        if prepared is not None:
            try:
                await remember_partial(prepared)
            except Exception:  # noqa: BLE001 - the run's row keeps the partial answer anyway
                logger.warning("could not keep the cancelled turn's transcript", extra={"run_id": run.pk}, exc_info=True)
    if status == RunStatus.INTERRUPTED:
        assert error is not None  # set with the interrupted status
        final = [{"type": "text-end", "id": text_id} for text_id in builder.open_text_ids]
        final += [
            {"type": "error", "errorText": f"{error['type']}: {error['message']}"},
            {"type": "finish", "messageMetadata": {"finish_reason": "interrupted"}},
        ]
    for chunk in final:
        builder.add(chunk)
    result = collector.result(reply=builder.text) if collector is not None else None
    if result is not None:
        result.update(run_id=run.pk, status=status)
    ended = await in_db_thread(run_finish)(
        run_id=run.pk,
        status=status,
        message=builder.message,
        result=result,
        usage=result["usage"] if result else {},
        step_count=len(collector.steps) if collector else 0,
        error=error,
    )
    if ended:
        await chunks_close(run.pk, final)
    metrics.observe_agent_turn(run.agent_id, str(status), len(collector.steps) if collector else 0)
    return str(status)
