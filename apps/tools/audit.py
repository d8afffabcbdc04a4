"""The tool-call audit trail, kept off the call's latency and never lost.

A call appends its audit entry to a Redis list (one RPUSH) and does nothing more. The entries
become ToolCall rows in the Celery worker: beat runs `tools.flush_audit` every
TOOLS_AUDIT_DRAIN_SECONDS, which calls `audit_flush`. A web process drains the list itself only
when TOOLS_AUDIT_FLUSH_INTERVAL is above 0 (a deployment without a worker; off by default):
parsing and inserting in the web process holds the GIL, which shows in its tail latency, as it
did for the LLM usage records (docs/BENCHMARKS.md). `manage.py flush_tool_audit` drains by hand.

A drain (daarion.infra.list_drain) reads a batch, inserts it with `ignore_conflicts` on the entry's
unique call_id, and only then trims the list, so a drainer that dies half-way leaves the batch
for the next one and a replay never doubles a row. One drainer at a time holds a Redis lock,
and it trims only while it still holds it. An entry that is not readable is logged and dropped; values a column cannot
hold are cleaned or clamped, and a row the database still refuses is logged and dropped alone,
so no entry can hold the queue up. If Redis cannot be reached the row is written directly.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Field

from daarion.infra.list_drain import drain_list
from daarion.infra.redis_client import get_async_redis, key
from daarion.infra.storable import clean_json, clean_text, insert_batch

logger = logging.getLogger(__name__)

_BATCH = 500
_LOCK_MS = 30_000
_MAX_INT = 2_147_483_647  # the integer column of tool_version


def _list_key() -> str:
    return key("tools", settings.TOOLS_AUDIT_QUEUE)


def _lock_key() -> str:
    return key("tools", settings.TOOLS_AUDIT_QUEUE + "-lock")


def audit_entry(
    *,
    tool_id: str,
    tool_version: int | None,
    agent_id: str,
    microdao_id: str,
    args: Any,
    status: str,
    error_type: str | None,
    error: str | None,
    latency_ms: float,
    request_id: str,
) -> dict[str, Any]:
    return {
        "call_id": uuid.uuid4().hex,
        "tool_id": tool_id[:128],
        "tool_version": tool_version,
        "agent_id": agent_id[:200],
        "microdao_id": (microdao_id or "")[:200],
        "args": args,
        "status": status,
        "error_type": (error_type or "")[:50],
        "error": (error or "")[:2000],
        "latency_ms": round(latency_ms, 3),
        "request_id": request_id[:128],
        "created_at": time.time(),
    }


def _row(data: Any) -> Any:
    """One entry as a ToolCall, every value one its column holds. Raises (ValueError, TypeError,
    KeyError) for an entry that is not an object with a call_id: nothing to store it under."""
    from apps.tools.models import ToolCall

    if not isinstance(data, dict):
        raise TypeError("an audit entry is a JSON object")
    call_id = uuid.UUID(str(data["call_id"]))
    version = data.get("tool_version")
    if not isinstance(version, int) or isinstance(version, bool):
        version = None
    latency = data.get("latency_ms")
    if not isinstance(latency, (int, float)) or not math.isfinite(latency):
        latency = 0.0
    try:
        created = datetime.fromtimestamp(data["created_at"], tz=UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        created = datetime.now(tz=UTC)

    # Tool ids, arguments and upstream error text come from callers and targets.
    def text(name: str) -> str:
        return clean_text(data.get(name), cast(Field, ToolCall._meta.get_field(name)).max_length)

    return ToolCall(
        call_id=call_id,
        tool_id=text("tool_id"),
        tool_version=None if version is None else max(0, min(version, _MAX_INT)),
        agent_id=text("agent_id"),
        microdao_id=text("microdao_id"),
        args=clean_json(data.get("args")),
        status=text("status"),
        error_type=text("error_type"),
        error=text("error"),
        latency_ms=float(latency),
        request_id=text("request_id"),
        created_at=created,
    )


def _rows(entries: list[Any]) -> list[Any]:
    """The ToolCalls of decoded entries; one that is not an audit entry is logged and left out."""
    rows = []
    for entry in entries:
        try:
            rows.append(_row(entry))
        except (ValueError, TypeError, KeyError, RecursionError):
            logger.error("dropping an unreadable tool audit entry: %r", str(entry)[:200])
    return rows


def _bulk_insert(rows: Sequence[Any]) -> None:
    from apps.tools.models import ToolCall

    ToolCall.objects.bulk_create(rows, ignore_conflicts=True)


def _insert(rows: list[Any]) -> int:
    """Inserts rows, skipping a call_id already stored (a replayed batch); returns how many
    rows are stored now.

    bulk_create is kept rather than the usage drain's INSERT ... SELECT FROM unnest: a batch is
    500 rows of 12 columns (6,000 parameters, far below PostgreSQL's 65,535), it runs in the
    worker and not on a request, and _row already makes every value one its column holds. Should
    the database refuse a row all the same, only that row is lost (insert_batch).
    """
    return insert_batch(rows, _bulk_insert, what="tool audit entries", describe=lambda row: f"call_id {row.call_id}")


def _write_from_thread(payload: str) -> None:
    try:
        _insert(_rows([json.loads(payload)]))
    finally:
        close_old_connections()  # a pool thread outlives this write


async def audit_enqueue(entry: dict[str, Any]) -> None:
    payload = json.dumps(entry, default=str)
    try:
        await get_async_redis().rpush(_list_key(), payload)
    except Exception:  # noqa: BLE001 - Redis down: slower, but the row is kept
        logger.warning("audit queue unavailable; writing the tool call row directly", exc_info=True)
        await sync_to_async(_write_from_thread, thread_sensitive=False)(payload)
        return
    if settings.TOOLS_AUDIT_FLUSH_INTERVAL > 0:
        _ensure_flusher()


def audit_flush(*, max_batches: int | None = None) -> int:
    """Moves queued entries into ToolCall rows; returns how many are stored (a replayed one
    counts: its row is there). 0 while another drainer holds the lock (daarion.infra.list_drain)."""
    return drain_list(
        list_key=_list_key(),
        lock_key=_lock_key(),
        lock_ms=_LOCK_MS,
        batch_size=_BATCH,
        max_batches=max_batches,
        store=_store,
        what="tool audit",
    )


def _store(items: list[bytes]) -> int:
    entries = []
    for item in items:
        try:
            entries.append(json.loads(item))
        except (ValueError, RecursionError):
            logger.error("dropping an unreadable tool audit entry: %r", item[:200])
    rows = _rows(entries)
    return _insert(rows) if rows else 0


_flusher: threading.Thread | None = None
_flusher_lock = threading.Lock()


def _flush_forever() -> None:
    while True:
        interval = settings.TOOLS_AUDIT_FLUSH_INTERVAL
        if interval <= 0:  # switched off at run time (the test suite drains by hand)
            time.sleep(1.0)
            continue
        time.sleep(interval)
        try:
            audit_flush()
        except Exception:  # noqa: BLE001 - entries stay queued; try again next tick
            logger.warning("tool audit flush failed; will retry", exc_info=True)
        finally:
            close_old_connections()


def _ensure_flusher() -> None:
    """Starts this process's flusher thread (only where TOOLS_AUDIT_FLUSH_INTERVAL > 0)."""
    global _flusher
    if _flusher is not None:
        return
    with _flusher_lock:
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_forever, daemon=True, name="tools-audit-flusher")
            _flusher.start()
