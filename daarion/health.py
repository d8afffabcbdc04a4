"""GET /health: database, pgvector, Redis and Celery worker reachability as JSON.

200 while the database (with pgvector) and Redis answer; 503 when either does not. Workers
are reported but do not fail the check unless `?require_worker=1`: a web replica must not be
restarted by its orchestrator because the worker pool is momentarily empty.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from daarion.infra.redis_client import get_async_redis


def _database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            cursor.execute("SHOW server_version")
            server_version = cursor.fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - the point is to report it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        connection.close()
    return {
        "ok": row is not None,
        "server_version": server_version,
        "pgvector": row[0] if row else None,
        **({} if row else {"error": "the vector extension is not installed"}),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


async def _redis() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await get_async_redis().ping()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _workers() -> dict[str, Any]:
    from daarion.celery import app

    try:
        replies = app.control.ping(timeout=0.5, limit=1)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    names = sorted(name for reply in replies or [] for name in reply)
    return {"ok": bool(names), "workers": names}


async def health(request: HttpRequest) -> JsonResponse:
    database = await sync_to_async(_database, thread_sensitive=False)()
    redis_status = await _redis()
    workers = (
        await sync_to_async(_workers, thread_sensitive=False)() if redis_status["ok"] else {"ok": False, "error": "redis is down"}
    )
    require_worker = request.GET.get("require_worker") in {"1", "true"}
    healthy = database["ok"] and redis_status["ok"] and (workers["ok"] or not require_worker)
    body = {
        "status": "ok" if healthy and workers["ok"] else ("degraded" if healthy else "down"),
        "checks": {"database": database, "redis": redis_status, "celery": workers},
    }
    return JsonResponse(body, status=200 if healthy else 503)
