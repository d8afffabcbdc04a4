"""The Celery app. Workers: `celery -A daarion worker -Q default,embeddings,summaries`."""

from __future__ import annotations

import os
from enum import StrEnum

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")


class Queue(StrEnum):
    """Every queue a task may be routed to; tasks name theirs explicitly."""

    DEFAULT = "default"
    EMBEDDINGS = "embeddings"
    SUMMARIES = "summaries"


app = Celery("daarion")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
