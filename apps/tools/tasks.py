"""Celery tasks of toolcore: draining the tool-call audit queue (beat, as a backstop for the
web processes' flusher threads: a queue left behind by a stopped process is written anyway)."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from apps.tools.audit import audit_flush
from daarion.celery import Queue


@shared_task(
    name="tools.flush_audit",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
    expires=30,
)
def flush_audit() -> int:
    """Entries stay queued in Redis while Postgres is down; a replay never doubles a row."""
    return audit_flush()
