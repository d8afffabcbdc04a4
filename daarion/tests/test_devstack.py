"""The embedded stack keeps its data across a stop and a start."""

from __future__ import annotations

import os

import psycopg
import pytest
import redis

from daarion.devstack import Stack


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
    from daarion.devstack import main

    assert main(["exec", "--data-dir", str(tmp_path)]) == 2
    assert os.listdir(tmp_path) == []
