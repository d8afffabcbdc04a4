"""The Celery app. Workers: `celery -A daarion worker -Q default,embeddings,summaries`, and
for agent runs `celery -A daarion worker -Q agents -P threads -c 64`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from enum import StrEnum

from celery import Celery
from celery.app import trace

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")


class Queue(StrEnum):
    """Every queue a task may be routed to; tasks name theirs explicitly."""

    DEFAULT = "default"
    EMBEDDINGS = "embeddings"
    SUMMARIES = "summaries"
    # Agent runs: long, mostly waiting on models and tools; served by workers of their own
    # with a thread pool (`-P threads`), each thread handing its run to the process's loop.
    AGENTS = "agents"


app = Celery("daarion")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class QuietTaskLines(logging.Filter):
    """Drops the INFO lines a task of `tasks` (beat's every-second drains) gets each time it
    runs: beat's "Scheduler: Sending due task <entry> (<task>)", and the worker's "Task X[id]
    received" and "... succeeded in ...: ..." (two to three lines a second each, all day).

    Attached (settings.LOGGING) to the loggers that write those lines: celery.beat (sending),
    celery.worker.strategy (received) and celery.app.trace (succeeded). A line is matched by its
    format and its task name: beat passes it as the message's second argument, and the worker
    passes each line's context as `record.data`, for handlers like this one. Every other line of
    these tasks (failures, retries, rejections, their own log calls) and every line of every
    other task is kept.
    """

    _WORKER_FORMATS = frozenset({trace.LOG_RECEIVED, trace.LOG_SUCCESS})
    BEAT_SENDING = "Scheduler: Sending due task %s (%s)"  # celery.beat.Scheduler.apply_entry

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if record.msg == self.BEAT_SENDING:
            args = record.args
            return not (isinstance(args, tuple) and len(args) == 2 and args[1] in self.tasks)
        if record.msg not in self._WORKER_FORMATS:
            return True
        data = getattr(record, "data", None)
        return not (isinstance(data, dict) and data.get("name") in self.tasks)
