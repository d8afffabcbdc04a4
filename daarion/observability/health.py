"""GET /health/live and GET /health/ready: the probes an orchestrator asks.

Liveness answers 200 whenever the process can run a view: it touches no dependency, so an
outage of Postgres or Redis never gets the web replicas restarted (which would not help).
Readiness checks what a request needs — the database with pgvector, Redis, and a Celery
worker seen within WORKER_SEEN_SECONDS (workers write a heartbeat, see celery_signals) — and
answers 503 naming the checks that failed, so a load balancer stops routing to a replica
that cannot serve. `/health` (daarion/health.py) is kept as it was.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from daarion.health import _database, _redis
from daarion.infra.redis_client import get_async_redis, key


def workers_key() -> str:
    """A sorted set: worker hostname -> the epoch seconds of its last heartbeat."""
    return key("obs", "workers")


async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _worker_seen() -> dict[str, Any]:
    window = float(settings.WORKER_SEEN_SECONDS)
    try:
        seen = await get_async_redis().zrangebyscore(workers_key(), time.time() - window, "+inf", withscores=True)
    except Exception as exc:  # noqa: BLE001 - the point is to report it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    workers = sorted(name.decode() if isinstance(name, bytes) else str(name) for name, _ in seen)
    if not workers:
        return {"ok": False, "workers": [], "error": f"no Celery worker seen in the last {window:g} s"}
    last = max(score for _, score in seen)
    return {"ok": True, "workers": workers, "last_seen_s_ago": round(max(0.0, time.time() - last), 1)}


async def ready(request: HttpRequest) -> JsonResponse:
    database = await sync_to_async(_database, thread_sensitive=False)()
    redis_status = await _redis()
    worker = await _worker_seen() if redis_status["ok"] else {"ok": False, "error": "redis is down"}
    checks: dict[str, dict[str, Any]] = {
        "database": {"ok": database["ok"], **{k: v for k, v in database.items() if k in ("error", "latency_ms")}},
        "pgvector": {
            "ok": database.get("pgvector") is not None,
            "version": database.get("pgvector"),
            **({} if database.get("pgvector") else {"error": database.get("error", "not installed")}),
        },
        "redis": redis_status,
        "worker": worker,
    }
    if not settings.HEALTH_READY_REQUIRE_WORKER:
        checks["worker"]["required"] = False
    failed = [name for name, check in checks.items() if not check["ok"] and check.get("required", True)]
    body = {"status": "down" if failed else "ok", "failed": failed, "checks": checks}
    return JsonResponse(
        body, status=503 if failed else 200, headers={"Cache-Control": "no-store", **({"Retry-After": "5"} if failed else {})}
    )
