"""The audit drain: tool calls become ToolCall rows in the Celery worker (beat), the web process
drains only when told to, Redis down writes directly, and no entry can hold the queue up."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from apps.tools.audit import _list_key, _lock_key, audit_entry, audit_flush
from apps.tools.models import ToolCall
from apps.tools.tests.conftest import call, wait_for, wait_until_served
from daarion.infra.redis_client import get_redis, key
from devtools.testing import ServerProcess, start_asgi_server, start_celery_beat

_WORKER_QUEUE = "audit"  # the list the session's Celery worker drains (its default TOOLS_AUDIT_QUEUE)


def _entry(**fields: Any) -> dict[str, Any]:
    base = {
        "tool_id": "t.audit",
        "tool_version": 1,
        "agent_id": "agent:sofia",
        "microdao_id": "microdao:7",
        "args": {"microdao_id": "microdao:7"},
        "status": "ok",
        "error_type": None,
        "error": None,
        "latency_ms": 1.5,
        "request_id": f"req-{uuid.uuid4().hex[:8]}",
    }
    return audit_entry(**{**base, **fields})


def _push(*items: Any) -> None:
    get_redis().rpush(_list_key(), *[i if isinstance(i, (str, bytes)) else json.dumps(i) for i in items])


def _queued() -> int:
    return get_redis().llen(_list_key())


# --- over HTTP, with real processes ---------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_web(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    """The app as deployed with a worker: no audit flusher of its own (the default)."""
    env = {
        **server_env,
        "DATABASE_POOL": "1",
        "TOOLS_HTTP_ALLOWED_HOSTS": "127.0.0.1",
        "TOOLS_AUDIT_QUEUE": _WORKER_QUEUE,
        "TOOLS_AUDIT_FLUSH_INTERVAL": "0",
    }
    env.pop("TOOLS_AUDIT_DRAIN_SECONDS", None)
    server = start_asgi_server(env, tmp_path_factory.mktemp("quiet-web"), name="tools-quiet-web")
    yield server
    server.stop()


@pytest.fixture
def make_http_tool(make_tool, http_target, transactional_db):
    def _make(tool_id: str, api: Any, token: str) -> None:
        make_tool(tool_id, target=f"{http_target}/echo")
        wait_until_served(api, token, {tool_id})

    return _make


def _http_call(api: Any, token: str, tool_id: str, args: Any, status: int = 200) -> None:
    body = {"tool_id": tool_id, "agent_id": "agent:sofia", "microdao_id": "microdao:7", "args": args}
    # "1e400" as a JSON reader sees it (json.dumps would write Infinity, which is not JSON).
    content = json.dumps(body).replace('"__1e400__"', "1e400")
    response = api.post(
        "/internal/tools/call", content=content, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text


def test_a_call_over_http_is_written_by_beat_and_the_worker_not_by_the_web_process(
    quiet_web, celery_worker, make_token, make_http_tool, server_env, tmp_path
):
    import httpx

    token = make_token(scopes=["tools"])
    queue = key("tools", _WORKER_QUEUE)
    with httpx.Client(base_url=quiet_web.url, timeout=30) as api:
        make_http_tool("t.drained", api, token)
        # Arguments jsonb cannot hold (NUL, a lone surrogate, 1e400 read as infinity) and a NUL in
        # the tool id: the entry is stored cleaned, and the plain call queued after it is stored too.
        _http_call(api, token, "t.drained", {"microdao_id": "m\u0000", "note": "\ud800", "n": "__1e400__", "k\u0000": 1})
        _http_call(api, token, "t.drained", {"microdao_id": "microdao:7"})
        _http_call(api, token, "t.\u0000unknown", {}, status=404)  # refused, and audited
    redis = get_redis()
    rows = ToolCall.objects.filter(tool_id__in=["t.drained", "t.unknown"])
    assert redis.llen(queue) == 3
    time.sleep(1.5)  # nothing in the web process drains: the entries wait for a worker
    assert redis.llen(queue) == 3 and not rows.exists()

    beat = start_celery_beat({**server_env, "TOOLS_AUDIT_DRAIN_SECONDS": "0.5"}, tmp_path)
    try:
        wait_for(lambda: rows.count() == 3 and redis.llen(queue) == 0, timeout=30, message="beat's drain in the worker")
    except AssertionError:
        raise AssertionError(f"no drain; beat's log:\n{beat.log_tail()}") from None
    finally:
        beat.stop()
    poisoned, plain = ToolCall.objects.filter(tool_id="t.drained").order_by("created_at")
    assert poisoned.args == {"microdao_id": "m", "note": "?", "n": None, "k": 1}
    assert plain.args == {"microdao_id": "microdao:7"} and plain.status == "ok"
    assert ToolCall.objects.get(tool_id="t.unknown").status == "not_found"


def test_a_web_process_told_to_flush_writes_rows_itself(tools_server, tools_api, make_token, make_http_tool):
    """tools_server runs with TOOLS_AUDIT_FLUSH_INTERVAL=0.1 on a list no worker drains."""
    token = make_token(scopes=["tools"])
    make_http_tool("t.self", tools_api, token)
    _http_call(tools_api, token, "t.self", {"microdao_id": "microdao:7"})
    # Nothing drains in this process: the row must come from the server's own flusher.
    wait_for(lambda: ToolCall.objects.filter(tool_id="t.self", status="ok").exists(), message="the server's flush")


# --- the drain, in this process --------------------------------------------------------------


def test_entries_nothing_can_store_are_dropped_and_the_rest_is_stored(db, caplog):
    good = _entry(request_id="req-good")
    _push(b"{broken", "[1, 2]", '"text"', {"tool_id": "no call id"}, {**_entry(), "call_id": "not-a-uuid"}, good)
    assert audit_flush() == 1
    assert _queued() == 0
    assert list(ToolCall.objects.values_list("request_id", flat=True)) == ["req-good"]
    assert sum("unreadable tool audit entry" in r.message for r in caplog.records) == 5


def test_values_a_column_cannot_hold_are_cleaned_and_do_not_block_the_rest(db):
    bad = _entry(
        tool_id="t.\x00bad",
        agent_id="agent:\ud800",
        microdao_id="m\x00",
        status="ok\x00",
        error_type="upstream\x00",
        error="body with \x00 NUL",
        request_id="req-\x00bad",
        args={"a\x00": ["x\x00", "\udc80", float("nan"), float("inf"), {"n": -float("inf")}], "big": 10**30},
    )
    bad.update(tool_version=10**12, latency_ms=float("nan"), created_at=1e20, status="s" * 50)
    negative = {**_entry(request_id="req-negative"), "tool_version": -3, "latency_ms": "slow", "created_at": "soon"}
    _push(bad, negative, _entry(request_id="req-after"))
    assert audit_flush() == 3
    assert _queued() == 0
    row = ToolCall.objects.get(request_id="req-bad")
    assert (row.tool_id, row.agent_id, row.microdao_id, row.error_type, row.error) == (
        "t.bad",
        "agent:?",
        "m",
        "upstream",
        "body with  NUL",
    )
    assert row.args == {"a": ["x", "?", None, None, {"n": None}], "big": 10**30}
    assert (row.tool_version, row.latency_ms, row.status) == (2_147_483_647, 0.0, "s" * 20)
    other = ToolCall.objects.get(request_id="req-negative")
    assert (other.tool_version, other.latency_ms) == (0, 0.0)
    assert ToolCall.objects.filter(request_id="req-after").exists()


def test_a_row_the_database_refuses_is_dropped_alone(db, caplog):
    # A rule the drain knows nothing about, enforced by the database (rolled back with the test).
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tools_toolcall ADD CONSTRAINT audit_test_refuse CHECK (tool_id <> 'refused')")
    _push(_entry(request_id="req-1"), _entry(tool_id="refused"), _entry(request_id="req-3"))
    assert audit_flush() == 2
    assert _queued() == 0
    assert sorted(ToolCall.objects.values_list("request_id", flat=True)) == ["req-1", "req-3"]
    assert any("the database refuses" in r.message for r in caplog.records)


def test_a_replayed_batch_inserts_each_row_once(db):
    entry = _entry(request_id="req-twice")
    _push(entry, entry)
    assert audit_flush() == 2
    _push(entry)
    assert audit_flush() == 1
    assert ToolCall.objects.filter(request_id="req-twice").count() == 1


def test_entries_wait_in_redis_while_postgres_is_down(transactional_db):
    _push(_entry(request_id="req-pg-down"))
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({"HOST": "/nonexistent-socket-dir", "PORT": "1"})
    try:
        with pytest.raises(Exception):  # noqa: B017 - psycopg's OperationalError, whatever its wrapper
            audit_flush()
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert _queued() == 1, "nothing was lost"
    assert not get_redis().exists(_lock_key()), "the lock was released"
    assert audit_flush() == 1
    assert ToolCall.objects.filter(request_id="req-pg-down").exists()


def test_redis_down_writes_the_row_directly_cleaned(make_tool, monkeypatch, closed_port):
    import redis.asyncio as aioredis

    from apps.tools import audit

    dead = aioredis.Redis(host="127.0.0.1", port=closed_port, socket_connect_timeout=0.5)
    monkeypatch.setattr(audit, "get_async_redis", lambda: dead)
    call("no.such.\x00tool", request_id="req-redis-down")
    row = ToolCall.objects.get(request_id="req-redis-down")
    assert (row.tool_id, row.status) == ("no.such.tool", "not_found")
    assert _queued() == 0


def test_a_drain_that_outlived_its_lock_does_not_trim(transactional_db):
    """A batch slower than the lock: another drainer may have taken the entries meanwhile, so
    this one leaves the list alone and the next drain replays its batch (no row twice)."""
    _push(_entry(request_id="req-slow"), _entry(request_id="req-slow-2"))
    blocker = connections.create_connection("default")
    blocker.connect()
    blocker.set_autocommit(False)
    blocker.cursor().execute("LOCK TABLE tools_toolcall IN EXCLUSIVE MODE")  # the drain's INSERT waits
    result: list[Any] = []

    def drain() -> None:
        try:
            result.append(audit_flush(max_batches=1))
        finally:
            connections.close_all()

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        wait_for(lambda: get_redis().exists(_lock_key()), message="the drain to take its lock")
        get_redis().set(_lock_key(), "another-drainer", px=30_000)  # as if it expired and was retaken
    finally:
        blocker.rollback()
        blocker.close()
    drainer.join(30)
    assert result == [2]
    assert _queued() == 2, "not trimmed by a drainer that no longer held the lock"
    get_redis().delete(_lock_key())
    assert audit_flush() == 2
    assert _queued() == 0
    assert ToolCall.objects.filter(request_id__startswith="req-slow").count() == 2
