"""The Celery app. Workers: `celery -A daarion worker -Q default,embeddings,summaries`."""

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


app = Celery("daarion")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class QuietTaskLines(logging.Filter):
    """Drops the worker's "Task X[id] received" and "... succeeded in ...: ..." INFO lines of
    the `tasks` named (beat's every-second drains: two lines a second each, all day).

    Attached (settings.LOGGING) to the two loggers that write those lines: celery.worker.strategy
    (received) and celery.app.trace (succeeded). Celery passes each such line's context as
    `record.data`, for handlers like this one; a line is matched by its format and that
    context's task name, so every other line of these tasks (failures, retries, rejections,
    their own log calls) and every line of every other task is kept.
    """

    _QUIET_FORMATS = frozenset({trace.LOG_RECEIVED, trace.LOG_SUCCESS})

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.msg not in self._QUIET_FORMATS:
            return True
        data = getattr(record, "data", None)
        return not (isinstance(data, dict) and data.get("name") in self.tasks)
