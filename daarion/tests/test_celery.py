"""The worker's log (daarion/celery.py QuietTaskLines, settings.LOGGING): beat's every-second
drains log no "received"/"succeeded" lines at INFO, every other task does, and a drain's
failure is logged like any task's. Read from a real worker's own log."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from apps.llm.tasks import drain_usage
from apps.memory.tasks import requeue_pending
from apps.tools.tasks import flush_audit
from daarion.redis_client import get_redis, key


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
