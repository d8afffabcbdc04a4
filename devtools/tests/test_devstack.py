"""The embedded stack keeps its data across a stop and a start, and a killed Redis; the
supervisor of `make run` restarts a crashed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
import redis

from devtools.devstack import AOF_FILE, EmbeddedRedis, Stack, supervise


@pytest.mark.slow
def test_embedded_stack_restarts_with_its_data(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    data_dir = tmp_path / "stack"

    stack = Stack(data_dir).start()
    try:
        with psycopg.connect(_psycopg_url(stack.env["DATABASE_URL"]), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()
        redis.Redis.from_url(stack.env["REDIS_URL"]).set("kept", "yes")
    finally:
        stack.stop()
    assert version is not None, "the vector extension is installed in the daarion database"

    stack = Stack(data_dir).start()
    try:
        with psycopg.connect(_psycopg_url(stack.env["DATABASE_URL"])) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("still here",)
        assert redis.Redis.from_url(stack.env["REDIS_URL"]).get("kept") == b"yes"
    finally:
        stack.stop()
    assert not (data_dir / "redis.json").exists(), "stop() leaves no running-server record"


def _psycopg_url(url: str) -> str:
    # Our URLs carry the socket directory percent-encoded in the host, which libpq reads as is.
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    host = unquote(parts.hostname or "")
    return f"dbname={parts.path.lstrip('/')} user={parts.username} host={host}"


def test_exec_without_a_command_is_an_error(tmp_path):
    from devtools.devstack import main

    assert main(["exec", "--data-dir", str(tmp_path)]) == 2
    assert os.listdir(tmp_path) == []


def test_embedded_redis_keeps_its_writes_when_killed(tmp_path):
    # AOF on: a write acknowledged just before a SIGKILL is there after the restart, without
    # the shutdown's snapshot (the RDB save points alone would have lost it).
    server = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(server.start())
    try:
        client.rpush("kept", *[f"record-{i}" for i in range(300)])
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        client = redis.Redis.from_url(EmbeddedRedis(tmp_path, port=server.port).start())
        assert client.llen("kept") == 300
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.shutdown(nosave=True)


def test_embedded_redis_from_a_snapshot_only_folder_keeps_its_data(tmp_path):
    # A data folder from before AOF has only redis.db: its data is loaded, then AOF goes on.
    server = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(server.start())
    client.set("old", "data")
    server.stop()  # SHUTDOWN SAVE: redis.db written
    (tmp_path / AOF_FILE).unlink()
    server = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(server.start())
    try:
        assert client.get("old") == b"data"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        server.stop()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_the_supervisor_restarts_a_crashed_worker_and_stops_with_the_web_server():
    children = {"web": _sleeper(), "worker": _sleeper()}
    started: list[str] = []

    def start(name: str) -> subprocess.Popen:
        started.append(name)
        return _sleeper()

    watch = threading.Thread(
        target=supervise, args=(children, start, lambda: False), kwargs={"critical": {"web"}, "poll_seconds": 0.05}
    )
    watch.start()
    first_worker = children["worker"]
    try:
        first_worker.kill()
        deadline = time.monotonic() + 30
        while children["worker"] is first_worker and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started == ["worker"] and children["worker"].poll() is None, "the worker was not restarted"
        children["web"].kill()  # the web server is not restarted: the watch ends
        watch.join(30)
        assert not watch.is_alive()
        assert started == ["worker"]
    finally:
        for child in children.values():
            child.kill()
            child.wait()
        first_worker.wait()
