"""Celery tasks of the LLM proxy: moving buffered usage records from Redis to Postgres."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from apps.llm.usage import drain_to_database
from daarion.celery import Queue


@shared_task(
    name="llm.drain_usage",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
    expires=30,
)
def drain_usage() -> int:
    """Beat runs this every few seconds; records stay in Redis while Postgres is down."""
    return drain_to_database()
