"""Celery tasks of toolcore: draining the tool-call audit queue into ToolCall rows (beat runs
it every TOOLS_AUDIT_DRAIN_SECONDS; see apps/tools/audit.py)."""

from __future__ import annotations

from celery import shared_task

from apps.tools.audit import audit_flush
from daarion.celery import Queue

# A run stops after this many batches of 500 and the next tick carries on, so one run never
# holds a worker (or the drain lock) for long however long the queue has grown.
_BATCHES_PER_RUN = 100


@shared_task(
    name="tools.flush_audit",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    expires=30,
)
def flush_audit() -> int:
    """Entries stay queued in Redis while Postgres is down; a replay never doubles a row.

    No retries: beat runs the task again within a second or so, and a retry beside the next
    tick would only queue the same work twice.
    """
    return audit_flush(max_batches=_BATCHES_PER_RUN)
