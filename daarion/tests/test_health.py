"""GET /health reports every dependency and answers 503 when one is down."""

from __future__ import annotations

import httpx

from devtools.testing import free_port, start_asgi_server


def test_health_reports_database_pgvector_redis_and_workers(api, celery_worker):
    response = api.get("/health")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["database"]["pgvector"]
    assert checks["redis"]["ok"]
    assert checks["celery"]["ok"] and checks["celery"]["workers"]
    assert response.json()["status"] == "ok"


def test_health_is_503_when_redis_is_down(server_env, tmp_path, transactional_db):
    env = {**server_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = start_asgi_server(env, tmp_path, name="no-redis")
    try:
        response = httpx.get(f"{server.url}/health", timeout=30)
    finally:
        server.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
