"""Usage records, written off the request path.

A call appends its record to a process-local queue (no I/O). A background thread moves the
queue to a Redis list every few milliseconds, and the records go from there to Postgres in
batches (`drain_to_database`: the in-process flusher and the Celery beat task `llm.drain_usage`
both call it). A batch leaves Redis only after Postgres committed it, so records wait in
Redis while Postgres is down; a unique record id makes a batch written twice insert once.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils.dateparse import parse_datetime

from daarion.redis_client import get_redis, key

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# Held in memory while Redis is unreachable; beyond this the oldest records are dropped
# (and logged), so a long Redis outage cannot exhaust the web process's memory.
MAX_LOCAL_BACKLOG = 100_000

_queue: collections.deque[str] = collections.deque()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_wake = threading.Event()

_RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def buffer_key() -> str:
    return key("llm", "usage", "buffer")


def _lock_key() -> str:
    return key("llm", "usage", "drain-lock")


def new_record(**fields: Any) -> dict[str, Any]:
    """A usage record as a JSON-ready dict (the fields of UsageRecord)."""
    record = {
        "record_id": uuid.uuid4().hex,
        "created_at": time.time(),
        **fields,
    }
    if isinstance(record.get("cost"), Decimal):
        record["cost"] = str(record["cost"])
    return record


def emit(record: dict[str, Any]) -> None:
    """Queues a record; never blocks and never raises."""
    try:
        _queue.append(json.dumps(record, default=str))
    except (TypeError, ValueError):
        logger.exception("unserializable usage record dropped: %r", record)
        return
    _ensure_thread()
    _wake.set()


def _ensure_thread() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="llm-usage", daemon=True)
            _thread.start()


def push_pending() -> int:
    """Moves the in-process queue to the Redis list. Returns how many records moved."""
    items: list[str] = []
    while _queue and len(items) < 5000:
        items.append(_queue.popleft())
    if not items:
        return 0
    try:
        get_redis().rpush(buffer_key(), *items)
    except Exception:  # noqa: BLE001 - keep them and try again
        _queue.extendleft(reversed(items))
        while len(_queue) > MAX_LOCAL_BACKLOG:
            _queue.popleft()
            logger.error("usage backlog over %s records; dropped the oldest", MAX_LOCAL_BACKLOG)
        raise
    return len(items)


def _run() -> None:
    last_drain = time.monotonic()
    while True:
        _wake.wait(timeout=0.25)
        _wake.clear()
        time.sleep(0.02)  # gather a burst into one RPUSH
        try:
            while push_pending():
                pass
        except Exception:  # noqa: BLE001
            logger.warning("could not push usage records to Redis; will retry", exc_info=True)
            time.sleep(1.0)
        interval = float(getattr(settings, "LLM_USAGE_FLUSH_INTERVAL", 1.0))
        # A pytest process leaves the database to the servers it starts and to explicit
        # drains: a thread writing outside the test's transaction would break isolation.
        if interval > 0 and "pytest" not in sys.modules and time.monotonic() - last_drain >= interval:
            last_drain = time.monotonic()
            try:
                drain_to_database()
            except Exception:  # noqa: BLE001 - records stay in Redis for the next try
                logger.warning("could not write usage records to the database; they wait in Redis", exc_info=True)
            finally:
                close_old_connections()


def _storable(value: Any) -> Any:
    """A string PostgreSQL accepts: without NUL and with lone surrogates replaced.

    Ids reach a record from callers (an agent turn's channel, say); one that Postgres refused
    would fail its whole batch on every drain, and every later record would wait behind it.
    """
    if not isinstance(value, str):
        return value
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _to_row(item: bytes | str) -> Any:
    from apps.llm.models import UsageRecord

    data = json.loads(item)
    created = data.get("created_at")
    if isinstance(created, (int, float)):
        from datetime import datetime, timezone

        created_at = datetime.fromtimestamp(created, tz=timezone.utc)
    else:
        created_at = parse_datetime(str(created))
    allowed = {f.name for f in UsageRecord._meta.get_fields()} - {"id", "created_at", "record_id"}
    values = {k: _storable(v) for k, v in data.items() if k in allowed and v is not None}
    for text_field in ("agent_id", "microdao_id", "channel_id", "provider", "upstream_model", "error_type", "request_id"):
        if text_field in values:
            values[text_field] = str(values[text_field])[: UsageRecord._meta.get_field(text_field).max_length]
    return UsageRecord(record_id=uuid.UUID(data["record_id"]), created_at=created_at, **values)


def drain_to_database(*, max_batches: int = 100) -> int:
    """Writes buffered records to Postgres in batches; returns how many were written.

    One drainer at a time (a Redis lock), so the list is trimmed only by whoever read it.
    """
    from apps.llm.models import UsageRecord

    client = get_redis()
    token = uuid.uuid4().hex
    if not client.set(_lock_key(), token, nx=True, px=60_000):
        return 0
    written = 0
    try:
        for _ in range(max_batches):
            items = client.lrange(buffer_key(), 0, BATCH_SIZE - 1)
            if not items:
                break
            rows = []
            for item in items:
                try:
                    rows.append(_to_row(item))
                except (ValueError, KeyError, TypeError):
                    logger.error("unreadable usage record skipped: %r", item[:300])
            UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)
            client.ltrim(buffer_key(), len(items), -1)
            written += len(rows)
    finally:
        client.eval(_RELEASE_LOCK, 1, _lock_key(), token)
    return written


def pending_in_redis() -> int:
    return int(get_redis().llen(buffer_key()))
