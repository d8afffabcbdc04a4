"""Celery tasks of the LLM proxy: moving buffered usage records from Redis to Postgres (beat
runs it every LLM_USAGE_DRAIN_SECONDS; see apps/llm/usage.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.llm.usage import drain_to_database, push_spilled
from daarion.celery import Queue

logger = logging.getLogger(__name__)

# A run stops after this many batches of 500 and the next tick carries on, so one run never
# holds a worker (or the drain lock) for long however long the buffer has grown.
_BATCHES_PER_RUN = 100


@shared_task(
    name="llm.drain_usage",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    expires=30,
)
def drain_usage() -> int:
    """Records stay in Redis while Postgres is down; a replay never doubles a row.

    No retries: beat runs the task again within a second or so, and a retry beside the next
    tick would only queue the same work twice (and pile up while the worker is stalled).
    """
    try:
        push_spilled()  # records a web process on this host spilled at shutdown (Redis was down)
    except Exception:  # the files stay for the next run; drain what Redis has
        logger.warning("could not push spilled usage records", exc_info=True)
    return drain_to_database(max_batches=_BATCHES_PER_RUN)
