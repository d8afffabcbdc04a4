"""The worker's and beat's logs (daarion/celery.py QuietTaskLines, settings.LOGGING): beat's
every-second drains get no "sending", "received" or "succeeded" line at INFO, every other task
does, and a drain's failure is logged like any task's. Read from the real processes' logs."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from apps.llm.tasks import drain_usage
from apps.memory.tasks import requeue_pending
from apps.tools.tasks import flush_audit
from daarion.infra.redis_client import get_redis, key


def _lines_with(worker, text: str) -> list[str]:
    return [line for line in worker.log_path.read_text(errors="replace").splitlines() if text in line]


def _wait_for_line(worker, *needles: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in _lines_with(worker, needles[0]):
            if all(n in line for n in needles[1:]):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no line with {needles} in the worker's log:\n{worker.log_tail()}")


@pytest.mark.django_db(transaction=True)
def test_the_drains_are_quiet_at_info_while_other_tasks_keep_their_lines(celery_worker):
    drains = [drain_usage.delay(), flush_audit.delay(), drain_usage.delay(), flush_audit.delay()]
    for result in drains:
        assert isinstance(result.get(timeout=30), int)  # they ran, and succeeded
    # Another task, after them on the same (solo) worker: once its lines are there, the
    # drains' would be too.
    other = requeue_pending.delay()
    assert other.get(timeout=30) == 0
    _wait_for_line(celery_worker, f"memory.requeue_pending[{other.id}] received")
    _wait_for_line(celery_worker, f"memory.requeue_pending[{other.id}] succeeded in")
    for result in drains:
        assert _lines_with(celery_worker, result.id) == [], "a drain logged its received/succeeded line"


@pytest.mark.django_db(transaction=True)
def test_a_failing_drain_is_still_logged(celery_worker):
    # Not a list where the worker's audit queue should be: Redis refuses the drain's LRANGE.
    queue = key("tools", settings.TOOLS_AUDIT_QUEUE)
    redis = get_redis()
    redis.set(queue, "not a list")
    try:
        result = flush_audit.delay()
        with pytest.raises(Exception, match="WRONGTYPE"):  # noqa: B017 - rebuilt from the result backend
            result.get(timeout=30)
        line = _wait_for_line(celery_worker, f"tools.flush_audit[{result.id}] raised unexpected", "WRONGTYPE")
        assert "ERROR" in line  # the level, in the JSON or the plain format
    finally:
        redis.delete(queue)
    # Received/succeeded stay quiet even for a run that failed: only the failure is there.
    assert len(_lines_with(celery_worker, result.id)) == 1


@pytest.mark.django_db(transaction=True)
def test_beat_sends_the_drains_without_a_line_for_each(celery_worker, server_env, tmp_path):
    import json

    from apps.tools.audit import audit_entry
    from apps.tools.models import ToolCall
    from devtools.testing import start_celery_beat

    # An entry in the list the session's worker drains: its row appears once beat has sent a drain.
    entry = audit_entry(
        tool_id="t.beat",
        tool_version=1,
        agent_id="agent:sofia",
        microdao_id="m",
        args={},
        status="ok",
        error_type=None,
        error=None,
        latency_ms=1.0,
        request_id="req-beat-quiet",
    )
    get_redis().rpush(key("tools", "audit"), json.dumps(entry))
    beat = start_celery_beat(
        {**server_env, "TOOLS_AUDIT_DRAIN_SECONDS": "0.5", "DAARION_LLM_USAGE_DRAIN_SECONDS": "0.5"}, tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while not ToolCall.objects.filter(request_id="req-beat-quiet").exists():
            assert time.monotonic() < deadline, f"beat sent no drain:\n{beat.log_tail()}"
            time.sleep(0.2)
        time.sleep(1.5)  # a few more ticks of both drains
    finally:
        beat.stop()
    log = beat.log_path.read_text(errors="replace")
    assert "beat: Starting" in log
    assert "Sending due task" not in log, log


def test_beat_keeps_the_sending_line_of_every_other_entry(caplog):
    import logging

    from daarion.celery import QuietTaskLines

    beat_log = logging.getLogger("celery.beat")  # the logger LOGGING puts the filter on
    with caplog.at_level(logging.INFO, logger="celery.beat"):
        beat_log.info(QuietTaskLines.BEAT_SENDING, "memory-requeue-pending", "memory.requeue_pending")
        beat_log.info(QuietTaskLines.BEAT_SENDING, "llm-drain-usage", "llm.drain_usage")
        beat_log.info(QuietTaskLines.BEAT_SENDING, "tools-flush-audit", "tools.flush_audit")
        beat_log.warning(QuietTaskLines.BEAT_SENDING, "llm-drain-usage", "llm.drain_usage")
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "celery.beat"] == [
        ("INFO", "Scheduler: Sending due task memory-requeue-pending (memory.requeue_pending)"),
        ("WARNING", "Scheduler: Sending due task llm-drain-usage (llm.drain_usage)"),
    ]
