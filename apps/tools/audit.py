"""The tool-call audit trail, kept off the call's latency and never lost.

A call appends its audit entry to a Redis list (one RPUSH); a flusher moves entries into
ToolCall rows in batches. Flushing reads a batch, inserts it with `ignore_conflicts` on the
entry's unique call_id, and only then trims the list, so a flusher that dies half-way leaves
the batch for the next one and a replay never doubles a row. One flusher at a time holds a
Redis lock. Every web process runs a flusher thread; `manage.py flush_tool_audit` drains by hand.
If Redis cannot be reached the entry is written to the database directly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from daarion.redis_client import get_async_redis, get_redis, key

logger = logging.getLogger(__name__)

_BATCH = 500
_LOCK_MS = 30_000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


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


def _rows(entries: list[dict[str, Any]]) -> list[Any]:
    from django.utils import timezone

    from apps.tools.models import ToolCall

    return [
        ToolCall(
            call_id=uuid.UUID(e["call_id"]),
            tool_id=e["tool_id"],
            tool_version=e.get("tool_version"),
            agent_id=e["agent_id"],
            microdao_id=e.get("microdao_id", ""),
            args=e.get("args"),
            status=e["status"],
            error_type=e.get("error_type", ""),
            error=e.get("error", ""),
            latency_ms=e.get("latency_ms", 0.0),
            request_id=e.get("request_id", ""),
            created_at=datetime.fromtimestamp(e["created_at"], tz=timezone.get_current_timezone()),
        )
        for e in entries
    ]


def _write(entries: list[dict[str, Any]]) -> None:
    from apps.tools.models import ToolCall

    ToolCall.objects.bulk_create(_rows(entries), ignore_conflicts=True)


def _write_from_thread(entries: list[dict[str, Any]]) -> None:
    try:
        _write(entries)
    finally:
        close_old_connections()  # a pool thread outlives this write


async def audit_enqueue(entry: dict[str, Any]) -> None:
    payload = json.dumps(entry, default=str)
    try:
        await get_async_redis().rpush(_list_key(), payload)
    except Exception:  # noqa: BLE001 - Redis down: slower, but the row is kept
        logger.warning("audit queue unavailable; writing the tool call row directly", exc_info=True)
        await sync_to_async(_write_from_thread, thread_sensitive=False)([entry])
        return
    _ensure_flusher()


def audit_flush(*, max_batches: int | None = None) -> int:
    """Moves queued entries into ToolCall rows; returns how many were written."""
    client = get_redis()
    token = uuid.uuid4().hex
    if not client.set(_lock_key(), token, nx=True, px=_LOCK_MS):
        return 0
    written = 0
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            raw = client.lrange(_list_key(), 0, _BATCH - 1)
            if not raw:
                break
            entries = []
            for item in raw:
                try:
                    entries.append(json.loads(item))
                except ValueError:
                    logger.error("dropping an unreadable audit entry: %r", item[:200])
            _write(entries)
            client.ltrim(_list_key(), len(raw), -1)
            written += len(entries)
            batches += 1
    finally:
        client.eval(_RELEASE, 1, _lock_key(), token)
    return written


_flusher: threading.Thread | None = None
_flusher_lock = threading.Lock()


def _flush_forever() -> None:
    while True:
        time.sleep(settings.TOOLS_AUDIT_FLUSH_INTERVAL)
        if not settings.TOOLS_AUDIT_BACKGROUND:
            continue  # switched off at run time (the test suite flushes by hand)
        try:
            audit_flush()
        except Exception:  # noqa: BLE001 - entries stay queued; try again next tick
            logger.warning("tool audit flush failed; will retry", exc_info=True)
        finally:
            close_old_connections()


def _ensure_flusher() -> None:
    global _flusher
    if _flusher is not None or not settings.TOOLS_AUDIT_BACKGROUND:
        return
    with _flusher_lock:
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_forever, daemon=True, name="tools-audit-flusher")
            _flusher.start()
