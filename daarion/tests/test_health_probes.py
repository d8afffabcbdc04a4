"""GET /health/live and /health/ready against real servers: a Postgres, a Redis, a web server
and a Celery worker of the test's own, stopped one after the other (the session's servers
must keep running for the other tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.devstack import EmbeddedPostgres, EmbeddedRedis
from devtools.testing import BASE_DIR, ServerProcess, start_asgi_server


def _wait_for(check, what: str, timeout: float = 60.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def own_stack(server_env, tmp_path: Path) -> Iterator[dict]:
    """A Postgres (with pgvector), a Redis, a web server and a worker, all of this test's own."""
    postgres, redis = EmbeddedPostgres(tmp_path / "stack"), EmbeddedRedis(tmp_path / "stack")
    env = {
        **server_env,
        "DATABASE_URL": postgres.start(),
        "REDIS_URL": redis.start(),
        "DAARION_REDIS_PREFIX": "probes:",
        "DAARION_WORKER_HEARTBEAT_SECONDS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    web: ServerProcess | None = None
    worker: subprocess.Popen | None = None
    try:
        web = start_asgi_server(env, tmp_path, name="probes-web")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "daarion",
                "worker",
                "--pool",
                "solo",
                "-Q",
                "default",
                "--hostname",
                "probes@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=open(tmp_path / "worker.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        yield {"url": web.url, "postgres": postgres, "redis": redis}
    finally:
        if worker is not None:
            worker.kill()
            worker.wait(10)
        if web is not None:
            web.stop()
        redis.stop()
        postgres.stop()


def test_live_and_ready_as_postgres_and_redis_stop(own_stack):
    url = own_stack["url"]
    with httpx.Client(base_url=url, timeout=30) as client:
        # Ready once the worker's first heartbeat is in.
        ready = _wait_for(lambda: (r := client.get("/health/ready")).status_code == 200 and r, "readiness")
        body = ready.json()
        assert body["status"] == "ok" and body["failed"] == []
        assert set(body["checks"]) == {"database", "pgvector", "redis", "worker"}
        assert body["checks"]["pgvector"]["version"] and body["checks"]["worker"]["workers"][0].startswith("probes@")
        assert client.get("/health/live").json() == {"status": "ok"}

        own_stack["redis"].stop()
        down = client.get("/health/ready")
        assert down.status_code == 503 and down.headers["Retry-After"]
        body = down.json()
        assert body["status"] == "down" and "redis" in body["failed"] and "worker" in body["failed"]
        assert "database" not in body["failed"] and body["checks"]["redis"]["error"]
        live = client.get("/health/live")
        assert live.status_code == 200, "liveness must not depend on Redis"
        assert client.get("/health").status_code == 503  # the old check is kept as it was

        own_stack["postgres"].stop()
        down = client.get("/health/ready")
        assert down.status_code == 503
        assert {"database", "pgvector", "redis"} <= set(down.json()["failed"])
        assert down.json()["checks"]["database"]["error"]
        assert client.get("/health/live").status_code == 200


def test_ready_names_a_missing_worker(server_env, tmp_path):
    """With no worker's heartbeat in the window, readiness fails on `worker` alone."""
    env = {**server_env, "DAARION_REDIS_PREFIX": "probes-noworker:"}
    web = start_asgi_server(env, tmp_path, name="probes-noworker")
    try:
        response = httpx.get(f"{web.url}/health/ready", timeout=30)
    finally:
        web.stop()
    assert response.status_code == 503
    assert response.json()["failed"] == ["worker"]
    assert response.json()["checks"]["worker"]["error"].startswith("no Celery worker seen")


def test_ready_with_the_session_servers(api, celery_worker):
    ready = _wait_for(lambda: (r := api.get("/health/ready")).status_code == 200 and r, "readiness", timeout=30)
    checks = ready.json()["checks"]
    assert all(check["ok"] for check in checks.values())
    assert ready.headers["Cache-Control"] == "no-store"
