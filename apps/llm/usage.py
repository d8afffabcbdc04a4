"""Usage records, written off the request path.

A call appends its record to a process-local queue (no I/O). A background thread moves the
queue to a Redis list every few milliseconds, and the records go from there to Postgres in
batches (`drain_to_database`), called by the Celery beat task `llm.drain_usage` every
LLM_USAGE_DRAIN_SECONDS, and by that thread too when LLM_USAGE_FLUSH_INTERVAL is set (a
deployment without a worker; off by default, see the setting).

A drain (daarion.infra.list_drain) reads a batch, inserts it (ON CONFLICT on the record's unique
record_id does nothing, so a batch written twice inserts once) and only then trims it from the
list: records wait in Redis while Postgres is down, and a drainer that dies half-way leaves its
batch to the next. One drainer at a time holds a Redis lock, and it trims only while it still
holds it.

Nothing waits only in memory at shutdown: `flush_at_exit` pushes the queue to Redis, or, with
Redis down, spills it to a file under DATA_DIR/usage-spill that the next usage thread (or the
worker's drain) pushes.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.db import close_old_connections, connection, models
from django.utils.dateparse import parse_datetime

from apps.access.auth import token_id_var
from daarion.infra import fast_json
from daarion.infra.list_drain import drain_list
from daarion.observability.metrics import observe_llm
from daarion.observability.tracing import llm_call_span
from daarion.infra.redis_client import get_redis, key
from daarion.infra.storable import clean_text, insert_batch

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# Held in memory while Redis is unreachable; beyond this the oldest records are dropped
# (and logged), so a long Redis outage cannot exhaust the web process's memory.
MAX_LOCAL_BACKLOG = 100_000

_queue: collections.deque[bytes | str] = collections.deque()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_wake = threading.Event()

_LOCK_MS = 60_000
# How often the usage thread looks for spill files left by a process that stopped while Redis
# was down (flush_at_exit).
_SPILL_CHECK_SECONDS = 30.0


def buffer_key() -> str:
    return key("llm", "usage", "buffer")


def _lock_key() -> str:
    return key("llm", "usage", "drain-lock")


def new_record(**fields: Any) -> dict[str, Any]:
    """A usage record as a JSON-ready dict (the fields of UsageRecord)."""
    record = {
        "record_id": uuid.uuid4().hex,
        "created_at": time.time(),
        "token_id": token_id_var.get(),  # the calling service token, when a request made the call
        **fields,
    }
    if isinstance(record.get("cost"), Decimal):
        record["cost"] = str(record["cost"])
    return record


def emit(record: dict[str, Any]) -> None:
    """Queues a record; never blocks and never raises. Every LLM call leaves exactly one, so
    the call is counted here too (daarion_llm_* metrics)."""
    observe_llm(record)
    llm_call_span(record)
    try:
        _queue.append(fast_json.dumps(record))
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
            if _thread is None:
                atexit.register(flush_at_exit)
            _thread = threading.Thread(target=_run, name="llm-usage", daemon=True)
            _thread.start()


def spill_dir() -> Path:
    return Path(settings.DATA_DIR) / "usage-spill"


def flush_at_exit(*, timeout: float = 5.0) -> int:
    """At shutdown (atexit): the records still in this process's queue go to Redis; what Redis
    does not take within `timeout` is written to a spill file under DATA_DIR/usage-spill, which
    the next process to start (or a worker's drain) pushes to Redis. Returns how many spilled."""
    deadline = time.monotonic() + timeout
    while _queue and time.monotonic() < deadline:
        try:
            push_pending()
        except Exception:  # Redis is down: spill below
            logger.warning("could not push usage records to Redis at shutdown", exc_info=True)
            break
    if not _queue:
        return 0
    items = [_queue.popleft() for _ in range(len(_queue))]
    folder = spill_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time():.6f}-{os.getpid()}.jsonl"
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        out.writelines((item if isinstance(item, bytes) else item.encode()) + b"\n" for item in items)
        out.flush()
        os.fsync(out.fileno())
    partial.rename(path)  # a reader never sees half a file
    logger.warning("Redis unreachable at shutdown: %s usage records spilled to %s", len(items), path)
    return len(items)


def push_spilled() -> int:
    """Pushes the spill files of earlier processes to Redis (each file is claimed by a rename,
    so two processes never push the same one) and removes them. Returns how many records moved;
    a file Redis does not take is put back for the next try."""
    folder = spill_dir()
    if not folder.is_dir():
        return 0
    moved = 0
    for path in sorted(folder.glob("*.jsonl")):
        claimed = path.with_suffix(f".claimed-{os.getpid()}")
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another process took it
            continue
        lines = [line for line in claimed.read_bytes().splitlines() if line.strip()]
        try:
            for start in range(0, len(lines), BATCH_SIZE):
                get_redis().rpush(buffer_key(), *lines[start : start + BATCH_SIZE])
        except Exception:
            # A batch may be in Redis already: the record ids make a second insert a no-op.
            claimed.rename(path)
            raise
        claimed.unlink()
        moved += len(lines)
        logger.info("pushed %s spilled usage records from %s", len(lines), path.name)
    return moved


def push_pending() -> int:
    """Moves the in-process queue to the Redis list. Returns how many records moved."""
    items: list[bytes | str] = []
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
    last_spill_check = 0.0
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
        if time.monotonic() - last_spill_check >= _SPILL_CHECK_SECONDS:
            last_spill_check = time.monotonic()
            try:
                push_spilled()
            except Exception:  # the files stay for the next check
                logger.warning("could not push spilled usage records to Redis; will retry", exc_info=True)
        interval = settings.LLM_USAGE_FLUSH_INTERVAL
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


@cache
def _columns() -> tuple[tuple[models.Field, str], ...]:
    """UsageRecord's columns with their SQL types (the model decides)."""
    from apps.llm.models import UsageRecord

    out = []
    for field in UsageRecord._meta.concrete_fields:
        if field.primary_key:
            continue
        out.append((field, cast(str, field.db_type(connection))))  # a concrete field has a column type
    return tuple(out)


_MAX_BY_TYPE = {"smallint": 32_767, "integer": 2_147_483_647, "bigint": 9_223_372_036_854_775_807}


def _column_value(field: models.Field, db_type: str, value: Any) -> Any:
    """`value` coerced to what the column accepts, or the field's default: a record that the
    database would refuse would fail its whole batch on every drain, and every later record
    would wait behind it. Ids reach a record from callers (an agent turn's channel, say)."""
    if value is None:
        return None if field.null else field.get_default()
    if isinstance(field, models.CharField):
        return clean_text(value, field.max_length)
    if isinstance(field, models.BooleanField):
        return bool(value)
    if isinstance(field, models.IntegerField):  # the positive and small ones too
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            return field.get_default()
        return max(0, min(number, _MAX_BY_TYPE.get(db_type, 2_147_483_647)))
    if isinstance(field, models.FloatField):
        try:
            real = float(value)
        except (TypeError, ValueError):
            return field.get_default()
        return real if math.isfinite(real) else field.get_default()
    if isinstance(field, models.DecimalField):
        try:
            decimal = Decimal(str(value))
        except InvalidOperation:
            return field.get_default()
        limit = Decimal(10) ** (field.max_digits - field.decimal_places)
        return decimal if decimal.is_finite() and abs(decimal) < limit else field.get_default()
    return value


def _row(item: bytes | str) -> list[Any]:
    """One buffered record as the column values of its row."""
    data = fast_json.loads(item)
    if not isinstance(data, dict):
        raise TypeError("a usage record is a JSON object")
    created = data.get("created_at")
    if isinstance(created, (int, float)) and math.isfinite(created):
        data["created_at"] = datetime.fromtimestamp(created, tz=timezone.utc)
    else:
        data["created_at"] = parse_datetime(str(created)) or datetime.now(tz=timezone.utc)
    data["record_id"] = uuid.UUID(str(data["record_id"]))
    return [_column_value(field, db_type, data.get(field.name)) for field, db_type in _columns()]


def _record_id_of(row: list[Any]) -> str:
    index = next(i for i, (field, _) in enumerate(_columns()) if field.name == "record_id")
    return f"record_id {row[index]}"


def _insert(rows: Sequence[list[Any]]) -> None:
    """One INSERT ... SELECT FROM unnest(...) per batch: a few hundred rows cost one statement
    and no model instances; a record id already stored (a batch written twice) is skipped."""
    from apps.llm.models import UsageRecord

    columns = _columns()
    names = ", ".join(connection.ops.quote_name(cast(str, field.column)) for field, _ in columns)  # concrete: a column
    arrays = ", ".join(f"%s::{db_type}[]" for _, db_type in columns)
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    record_id = connection.ops.quote_name(cast(str, cast(models.Field, UsageRecord._meta.get_field("record_id")).column))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT ({record_id}) DO NOTHING",
            [list(values) for values in zip(*rows)],
        )


def drain_to_database(*, max_batches: int = 100) -> int:
    """Writes buffered records to Postgres, at most `max_batches` batches; returns how many
    records were written (a replayed one counts: its row is there). 0 while another drainer
    holds the lock (daarion.infra.list_drain: one drainer at a time, and a batch is trimmed only by a
    drainer that still holds the lock, so no record is trimmed twice)."""
    return drain_list(
        list_key=buffer_key(),
        lock_key=_lock_key(),
        lock_ms=_LOCK_MS,
        batch_size=BATCH_SIZE,
        max_batches=max_batches,
        store=_store,
        what="usage",
    )


def _store(items: list[bytes]) -> int:
    rows = []
    for item in items:
        try:
            rows.append(_row(item))
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.error("unreadable usage record skipped: %r", item[:300])
    return insert_batch(rows, _insert, what="usage records", describe=_record_id_of) if rows else 0


def pending_in_redis() -> int:
    return int(get_redis().llen(buffer_key()))
