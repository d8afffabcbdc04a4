"""What Celery workers report: a heartbeat in Redis (for GET /health/ready), and task runs
and runtimes as metrics. (Traces cross into tasks through OpenTelemetry's Celery
instrumentation, installed with tracing: observability.tracing.)

Connected once per process from ProjectConfig.ready(); the handlers do nothing in processes
that run no tasks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from celery import signals
from django.conf import settings

from daarion.observability import metrics

logger = logging.getLogger(__name__)

_started: dict[str, float] = {}  # task id -> when it started
_heartbeat_stop = threading.Event()


def _heartbeat(hostname: str) -> None:
    from daarion.observability.health import workers_key
    from daarion.infra.redis_client import get_redis

    every = float(settings.WORKER_HEARTBEAT_SECONDS)
    keep = max(float(settings.WORKER_SEEN_SECONDS) * 10, 600.0)
    while not _heartbeat_stop.is_set():
        try:
            client = get_redis()
            now = time.time()
            pipe = client.pipeline(transaction=False)
            pipe.zadd(workers_key(), {hostname: now})
            pipe.zremrangebyscore(workers_key(), "-inf", now - keep)  # long-gone workers
            pipe.execute()
        except Exception:  # noqa: BLE001 - Redis away: readiness will say so; keep beating
            logger.warning("worker heartbeat not written", exc_info=True)
        _heartbeat_stop.wait(every)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    _heartbeat_stop.clear()
    threading.Thread(target=_heartbeat, args=(hostname,), name="worker-heartbeat", daemon=True).start()


def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    _heartbeat_stop.set()
    hostname = getattr(sender, "hostname", None)
    if not hostname:
        return
    try:
        from daarion.observability.health import workers_key
        from daarion.infra.redis_client import get_redis

        get_redis().zrem(workers_key(), hostname)
    except Exception:  # noqa: BLE001 - its heartbeat simply ages out
        logger.warning("worker heartbeat not removed", exc_info=True)


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.perf_counter()


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    seconds = None if started is None else time.perf_counter() - started
    if task is not None and state in ("SUCCESS", "FAILURE"):
        metrics.observe_celery_task(task.name, state.lower(), seconds)


def _on_retry(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", None)
    if name:
        metrics.observe_celery_task(name, "retry", None)


def connect() -> None:
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="daarion-obs-ready")
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="daarion-obs-shutdown")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="daarion-obs-prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="daarion-obs-postrun")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid="daarion-obs-retry")
