"""Usage records: written in batches off the request path, kept in Redis while Postgres is
down, idempotent, drained by the Celery task, and recorded for cancelled streams."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection, connections

from apps.llm import usage
from apps.llm.models import UsageRecord
from apps.llm.tasks import drain_usage
from apps.llm.tests.conftest import usage_rows, wait_for
from daarion.infra.redis_client import get_redis


def _record(request_id: str, **fields) -> dict:
    return usage.new_record(request_id=request_id, logical_model="m", status="ok", total_tokens=3, **fields)


@pytest.mark.django_db(transaction=True)
def test_records_wait_in_redis_while_postgres_is_down():
    for i in range(3):
        usage.emit(_record(f"req-down-{i}"))
    usage.push_pending()
    assert usage.pending_in_redis() == 3
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({"HOST": "/nonexistent-socket-dir", "PORT": "1"})
    try:
        with pytest.raises(Exception):  # noqa: B017 - psycopg's OperationalError, whatever its wrapper
            usage.drain_to_database()
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert usage.pending_in_redis() == 3, "nothing was lost"
    assert usage.drain_to_database() == 3
    assert usage.pending_in_redis() == 0
    assert UsageRecord.objects.filter(request_id__startswith="req-down-").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_batch_written_twice_inserts_once():
    record = _record("req-twice")
    from daarion.infra.redis_client import get_redis

    get_redis().rpush(usage.buffer_key(), json.dumps(record), json.dumps(record))
    usage.drain_to_database()
    assert UsageRecord.objects.filter(request_id="req-twice").count() == 1


@pytest.mark.django_db(transaction=True)
def test_unreadable_records_are_skipped_not_blocking():
    from daarion.infra.redis_client import get_redis

    get_redis().rpush(usage.buffer_key(), b"{broken", json.dumps(_record("req-after-broken")))
    assert usage.drain_to_database() == 1
    assert usage.pending_in_redis() == 0


@pytest.mark.django_db(transaction=True)
def test_a_record_with_text_postgres_refuses_is_stored_cleaned_and_does_not_block_the_rest():
    from daarion.infra.redis_client import get_redis

    bad = _record("req-nul\x00", channel_id="c\x00h", microdao_id="m \ud800", agent_id="agent:\x00x")
    get_redis().rpush(usage.buffer_key(), json.dumps(bad), json.dumps(_record("req-after-nul")))
    assert usage.drain_to_database() == 2
    assert usage.pending_in_redis() == 0
    row = UsageRecord.objects.get(request_id="req-nul")
    assert (row.channel_id, row.microdao_id, row.agent_id) == ("ch", "m ?", "agent:x")
    assert UsageRecord.objects.filter(request_id="req-after-nul").exists()


@pytest.mark.django_db(transaction=True)
def test_a_record_with_numbers_the_columns_cannot_hold_is_stored_clamped_and_does_not_block_the_rest():
    from daarion.infra.redis_client import get_redis

    # An upstream that reports absurd usage, a NaN latency, a cost beyond numeric(16, 8).
    bad = _record(
        "req-huge",
        prompt_tokens=10**12,
        completion_tokens=-5,
        attempts=10**6,
        cost="1e30",
        latency_ms=float("nan"),
        ttft_ms="soon",
    )
    get_redis().rpush(usage.buffer_key(), json.dumps(bad), json.dumps(_record("req-after-huge")))
    assert usage.drain_to_database() == 2
    assert usage.pending_in_redis() == 0
    row = UsageRecord.objects.get(request_id="req-huge")
    assert (row.prompt_tokens, row.completion_tokens, row.attempts) == (2_147_483_647, 0, 32_767)
    assert (row.cost, row.latency_ms, row.ttft_ms) == (0, 0, None)
    assert UsageRecord.objects.filter(request_id="req-after-huge").exists()


def test_a_record_the_database_refuses_is_dropped_alone(db, caplog):
    # A rule the drain's cleaning knows nothing about, enforced by the database (rolled back
    # with the test): before, it failed the whole batch on every drain, and every later
    # record waited behind it.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE llm_usagerecord ADD CONSTRAINT usage_test_refuse CHECK (channel_id <> 'refused')")
    refused = _record("req-refused", channel_id="refused")
    records = [_record("req-before-refused"), refused, _record("req-after-refused")]
    get_redis().rpush(usage.buffer_key(), *[json.dumps(r) for r in records])
    assert usage.drain_to_database() == 2
    assert usage.pending_in_redis() == 0
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["req-after-refused", "req-before-refused"]
    dropped = f"record_id {uuid.UUID(refused['record_id'])}"
    assert any(dropped in r.getMessage() for r in caplog.records), "the dropped record is named in the log"


@pytest.mark.django_db(transaction=True)
def test_the_celery_task_drains_the_buffer(celery_worker):
    usage.emit(_record("req-celery"))
    usage.push_pending()
    assert drain_usage.delay().get(timeout=30) >= 1
    assert UsageRecord.objects.filter(request_id="req-celery").exists()


def _lock_usage_table() -> Any:
    """A connection holding the usage table in EXCLUSIVE mode: a drain's INSERT waits for it
    (a Postgres or worker stall, for real). Roll it back and close it to let the drain go on."""
    blocker = connections.create_connection("default")
    blocker.connect()
    blocker.set_autocommit(False)
    blocker.cursor().execute(f"LOCK TABLE {UsageRecord._meta.db_table} IN EXCLUSIVE MODE")
    return blocker


@pytest.mark.django_db(transaction=True)
def test_a_drain_that_outlived_its_lock_does_not_trim_and_the_next_replays_its_batch(caplog):
    """A batch slower than the lock: another drainer may have taken the records meanwhile, so
    this one leaves the list alone, and the next drain writes the batch again (no row twice)."""
    get_redis().rpush(usage.buffer_key(), json.dumps(_record("req-slow-1")), json.dumps(_record("req-slow-2")))
    blocker = _lock_usage_table()
    result: list[int] = []

    def drain() -> None:
        try:
            result.append(usage.drain_to_database(max_batches=1))
        finally:
            connections.close_all()

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        assert wait_for(lambda: get_redis().exists(usage._lock_key())), "the drain took its lock"  # noqa: SLF001
        get_redis().set(usage._lock_key(), "another-drainer", px=30_000)  # noqa: SLF001 - as if it expired and was retaken
    finally:
        blocker.rollback()
        blocker.close()
    drainer.join(30)
    assert result == [2], "the batch was inserted"
    assert usage.pending_in_redis() == 2, "not trimmed by a drainer that no longer held the lock"
    assert get_redis().get(usage._lock_key()) == b"another-drainer", "nor was the other drainer's lock released"  # noqa: SLF001
    assert any("outlived its lock" in r.message for r in caplog.records)
    get_redis().delete(usage._lock_key())  # noqa: SLF001 - the other drainer is done
    assert usage.drain_to_database() == 2
    assert usage.pending_in_redis() == 0
    assert UsageRecord.objects.filter(request_id__startswith="req-slow-").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_failing_drain_is_not_retried_and_its_records_wait_for_the_next_tick(celery_worker):
    """Postgres refuses the batch (a trigger that also counts the attempts, in a sequence that no
    rollback undoes): the task fails once, and the next drain writes the records."""
    table = UsageRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE usage_test_attempts")
        cursor.execute("""CREATE FUNCTION usage_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM nextval('usage_test_attempts'); RAISE EXCEPTION 'refused by the test'; END $$""")
        cursor.execute(
            f"CREATE TRIGGER usage_test_refuse BEFORE INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION usage_test_refuse()"
        )
    try:
        get_redis().rpush(usage.buffer_key(), json.dumps(_record("req-refused")))
        result = drain_usage.delay()
        with pytest.raises(Exception, match="refused by the test"):  # noqa: B017 - rebuilt from the result backend
            result.get(timeout=60)
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM usage_test_attempts")
            assert cursor.fetchone()[0] == 1, "one attempt, no retries"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER usage_test_refuse ON {table}")
            cursor.execute("DROP FUNCTION usage_test_refuse()")
            cursor.execute("DROP SEQUENCE usage_test_attempts")
    assert usage.pending_in_redis() == 1, "the records waited in Redis"
    assert drain_usage.delay().get(timeout=30) == 1
    assert UsageRecord.objects.filter(request_id="req-refused").exists()


@pytest.mark.django_db(transaction=True)
def test_beat_drains_keep_no_result_and_those_a_stalled_worker_did_not_start_in_time_are_dropped(celery_worker):
    entry = settings.CELERY_BEAT_SCHEDULE["llm-drain-usage"]
    options = entry["options"]
    assert (entry["task"], entry["schedule"], options["queue"]) == (
        "llm.drain_usage",
        settings.LLM_USAGE_DRAIN_SECONDS,
        "default",
    )
    stall = 6 * max(1.0, entry["schedule"])  # six ticks (of a second at least)

    usage.emit(_record("req-stalled"))
    usage.push_pending()
    blocker = _lock_usage_table()
    try:
        stalled = drain_usage.delay()
        assert wait_for(lambda: get_redis().exists(usage._lock_key()), timeout=30), "the worker's drain started"  # noqa: SLF001
        # A tick queued behind the stalled drain; its result is kept here only to see what became of it.
        missed = drain_usage.apply_async(**{**options, "ignore_result": False})
        time.sleep(stall)
    finally:
        blocker.rollback()
        blocker.close()
    assert stalled.get(timeout=30) == 1
    tick = drain_usage.apply_async(**options)
    direct = drain_usage.delay()
    assert direct.get(timeout=30) == 0, "a direct caller still gets its result"
    # One worker runs these in order: by now the missed tick and the tick are settled.
    assert missed.state == "REVOKED", "a drain not started within a few ticks was dropped, not run"
    assert tick.state == "PENDING", "beat's drain ran and kept no result"
    result_key = f"{settings.REDIS_KEY_PREFIX}celery:celery-task-meta-{{}}".format
    assert get_redis().exists(result_key(direct.id)) and not get_redis().exists(result_key(tick.id))
    assert UsageRecord.objects.filter(request_id="req-stalled").count() == 1


def _stream_lines(base_url: str, headers: dict, body: dict, stop_after_deltas: int) -> list[str]:
    lines = []
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{base_url}/internal/llm/stream", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if sum('"text-delta"' in item for item in lines) >= stop_after_deltas:
                break  # leaving the block closes the connection mid-stream
    return lines


def test_a_cancelled_stream_cancels_upstream_and_records_partial_usage(
    api, fake_provider, make_model, llm_headers, live, fake_stats
):
    make_model("staller", fake_provider, "stall:3")
    live()
    body = {
        "model": "staller",
        "messages": [{"role": "user", "content": "tell me a long story"}],
        "metadata": {"agent_id": "agent:sofia"},
        "request_id": "req-cancel-stream",
    }
    _stream_lines(str(api.base_url).rstrip("/"), llm_headers, body, stop_after_deltas=3)
    assert wait_for(lambda: fake_stats()["disconnects"] >= 1), "the upstream request was cancelled"
    rows = usage_rows(request_id="req-cancel-stream")
    assert rows, "a cancelled stream still yields a usage record"
    row = rows[0]
    assert (row.status, row.error_type, row.stream) == ("cancelled", "client_disconnected", True)
    assert row.completion_tokens >= 3 and row.prompt_tokens > 0


def test_a_client_giving_up_cancels_a_non_streamed_call(api, fake_provider, make_model, llm_headers, live, fake_stats):
    make_model("sleepy", fake_provider, "hang")
    live()
    body = {"model": "sleepy", "messages": [{"role": "user", "content": "hi"}], "request_id": "req-cancel-proxy"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(str(api.base_url).rstrip("/") + "/internal/llm/proxy", json=body, headers=llm_headers, timeout=0.5)
    assert wait_for(lambda: fake_stats()["disconnects"] >= 1)
    rows = usage_rows(request_id="req-cancel-proxy")
    assert rows and rows[0].status == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_a_stream_abandoned_before_its_body_started_still_settles(stub_model, make_agents):
    """The client went away between the headers and the first chunk: the task ends without
    ever iterating the body; usage is still recorded and the concurrency slot released."""
    import asyncio

    from asgiref.sync import async_to_sync

    from apps.llm import router, services
    from apps.llm.tests.conftest import usage_rows

    make_agents("agent:solo")
    services.rate_limit_policy_create(scope="agent", subject="agent:solo", max_concurrent=1)
    call = router.ChatCall(model="dagi-stub", messages=[{"role": "user", "content": "hi there"}])

    async def scenario() -> None:
        routed = router.Stream(call, router.CallContext(agent_id="agent:solo", request_id="req-abandoned"))

        async def view() -> None:
            routed.finish_with(asyncio.current_task())
            await routed.admit()
            await routed.open()

        await asyncio.create_task(view())
        for _ in range(100):  # the done-callback's cleanup runs as its own task
            if routed._recorded:  # noqa: SLF001
                break
            await asyncio.sleep(0.01)
        again = router.Stream(call, router.CallContext(agent_id="agent:solo"))
        await again.admit()  # would be 429 if the first slot had leaked
        await again.abandon()

    async_to_sync(scenario)()
    row = usage_rows(request_id="req-abandoned")[0]
    assert (row.status, row.error_type, row.stream) == ("cancelled", "client_disconnected", True)


def test_records_stay_in_the_process_while_redis_is_down():
    import time

    import redis as redis_lib

    from daarion.infra import redis_client

    working = redis_client.get_redis()
    redis_client._sync_client = redis_lib.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)  # noqa: SLF001
    try:
        usage.emit(_record("req-redis-down"))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the pusher keeps failing meanwhile (it runs every 0.25 s)
            try:
                usage.push_pending()
            except redis_lib.ConnectionError:
                pass
            time.sleep(0.05)
    finally:
        redis_client._sync_client = working  # noqa: SLF001

    def landed() -> bool:
        usage.push_pending()
        return any(b"req-redis-down" in item for item in working.lrange(usage.buffer_key(), 0, -1))

    assert wait_for(landed), "the record waited in memory and reached Redis once it was back"


@pytest.fixture
def draining_server(server_env, tmp_path):
    """A web process that writes usage records itself (a deployment without a worker)."""
    from devtools.testing import start_asgi_server

    server = start_asgi_server({**server_env, "DAARION_LLM_USAGE_FLUSH_INTERVAL": "0.2"}, tmp_path, name="web-draining")
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_web_process_told_to_drain_writes_usage_rows_without_a_worker(draining_server, stub_model, llm_headers):
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}], "request_id": "req-self-drained"}

    def answered() -> bool:
        return (
            httpx.post(f"{draining_server.url}/internal/llm/proxy", json=body, headers=llm_headers, timeout=30).status_code == 200
        )

    assert wait_for(answered), "the server answers once it has the model"
    # Nothing drains in this process: the row must come from the server's own flusher.
    assert wait_for(lambda: UsageRecord.objects.filter(request_id="req-self-drained").exists())
