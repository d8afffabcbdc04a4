"""What Celery workers report: a heartbeat in Redis (for GET /health/ready), task runs and
runtimes as metrics, and the trace context carried from the publisher into each task.

Connected once per process from DaarionConfig.ready(); the handlers do nothing in processes
that neither publish nor run tasks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from celery import signals
from django.conf import settings
from opentelemetry.propagators.textmap import Getter

from daarion.observability import metrics, tracing

logger = logging.getLogger(__name__)

_started: dict[str, tuple[float | None, Any, Any]] = {}  # task id -> (start, span, context token)
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


def _before_publish(headers: dict | None = None, **_: Any) -> None:
    # Protocol 2: `headers` are the message's headers; the worker reads them back as
    # attributes of task.request (what OpenTelemetry's Celery instrumentation does too).
    if headers is not None and tracing.enabled():
        tracing.inject(headers)


class _RequestGetter(Getter[Any]):
    @staticmethod
    def get(carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None and isinstance(getattr(carrier, "headers", None), dict):
            value = carrier.headers.get(key)
        return [value] if isinstance(value, str) else None

    @staticmethod
    def keys(carrier: Any) -> list[str]:
        return []


_REQUEST_GETTER = _RequestGetter()


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    span = token = None
    if tracing.enabled():
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace

        parent = propagate.extract(task.request, getter=_REQUEST_GETTER)
        span = tracing.tracer.start_span(
            f"run/{task.name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "celery", "celery.task_name": task.name, "messaging.message.id": task_id},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
    _started[task_id] = (time.perf_counter(), span, token)


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started, span, token = _started.pop(task_id or "", (None, None, None))
    seconds = None if started is None else time.perf_counter() - started
    if task is not None and state in ("SUCCESS", "FAILURE"):
        metrics.observe_celery_task(task.name, state.lower(), seconds)
    if span is not None:
        from opentelemetry import context as otel_context

        if state == "FAILURE":
            tracing.mark_failed(span, "task failed")
        span.set_attribute("celery.state", state or "")
        span.end()
        try:
            otel_context.detach(token)
        except Exception:  # noqa: BLE001 - a context from another thread: nothing to restore
            pass


def _on_retry(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", None)
    if name:
        metrics.observe_celery_task(name, "retry", None)


def connect() -> None:
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="daarion-obs-ready")
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="daarion-obs-shutdown")
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid="daarion-obs-publish")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="daarion-obs-prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="daarion-obs-postrun")
    signals.task_retry.connect(_on_retry, weak=False, dispatch_uid="daarion-obs-retry")
