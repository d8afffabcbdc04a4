"""Rate limits: atomic in Redis, exact across two server processes, 429 with headers,
token reservations settled to real usage, concurrency slots released."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from apps.llm import ratelimit, services
from apps.llm.selectors import load_registry
from apps.llm.tests.conftest import wait_for
from daarion.infra.errors import RateLimited, ServiceUnavailable
from devtools.testing import inside_one_minute, start_asgi_server


@pytest.fixture(autouse=True)
def _whole_window():
    inside_one_minute()


def acquire(buckets, estimate=10):
    return async_to_sync(ratelimit.acquire)(buckets, estimate=estimate)


def settle(lease, tokens):
    async_to_sync(ratelimit.settle)(lease, actual_tokens=tokens)


def test_requests_per_minute_are_counted_and_refused_with_headers():
    bucket = ratelimit.Bucket("agent:test-rpm", rpm=3, tpm=None, max_concurrent=None)
    leases = [acquire([bucket]) for _ in range(3)]
    assert [lease.headers["x-ratelimit-remaining-requests"] for lease in leases] == ["2", "1", "0"]
    left_of_minute = 60 - time.time() % 60
    with pytest.raises(RateLimited) as info:
        acquire([bucket])
    error = info.value
    assert error.status == 429
    # The 3 calls weigh 3 * (1 - s/60) s into the next minute: under 3 (room for one) as it starts.
    assert abs(int(error.headers["Retry-After"]) - left_of_minute) <= 1.5
    assert error.headers["x-ratelimit-limit-requests"] == "3"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.details["limit"] == "requests"


def _seed_previous_minute(bucket, limit: str, count: int) -> None:
    """What the previous minute's calls left in Redis for `bucket`."""
    from daarion.infra.redis_client import get_redis, key

    window = int(time.time() * 1000) // ratelimit.WINDOW_MS
    get_redis().set(key("llm", "rl", bucket.name, limit, str(window - 1)), count, px=ratelimit.WINDOW_MS)


def test_the_previous_minute_counts_by_its_share_of_the_last_60_seconds():
    bucket = ratelimit.Bucket("agent:test-sliding", rpm=100, tpm=None, max_concurrent=None)
    _seed_previous_minute(bucket, "rpm", 60)  # one a second: `left` of them still inside the last 60 s
    left_before = 60 - time.time() % 60
    remaining = int(acquire([bucket]).headers["x-ratelimit-remaining-requests"])
    left_after = 60 - time.time() % 60
    assert int(99 - left_before) <= remaining <= int(99 - left_after) + 1


def test_a_refusal_waits_for_the_previous_minute_to_slide_out():
    bucket = ratelimit.Bucket("agent:test-sliding-full", rpm=100, tpm=None, max_concurrent=None)
    _seed_previous_minute(bucket, "rpm", 1000)
    left = 60 - time.time() % 60
    with pytest.raises(RateLimited) as info:
        acquire([bucket])
    # 1000 * (left - s) / 60 falls under 100 (room for one) at s = left - 6.
    assert abs(int(info.value.headers["Retry-After"]) - (left - 6)) <= 1.5
    assert info.value.details["limit"] == "requests"


def _sleep_until_phase(window_s: float, phase: float) -> None:
    """Sleeps until `phase` (0..1) of a window of `window_s` seconds, at least 50 ms ahead."""
    now = time.time()
    target = (now // window_s) * window_s + phase * window_s
    while target < now + 0.05:
        target += window_s
    time.sleep(target - now)


def test_no_second_budget_right_after_a_window_boundary(monkeypatch):
    """A fixed window would take a full budget at the end of one window and another at the
    start of the next; the sliding count keeps any window-long span near one budget."""
    monkeypatch.setattr(ratelimit, "WINDOW_MS", 4000)  # 4 s windows, so the test takes seconds
    bucket = ratelimit.Bucket("agent:test-boundary", rpm=10, tpm=None, max_concurrent=None)
    _sleep_until_phase(4.0, 0.5)
    for _ in range(10):
        acquire([bucket])
    _sleep_until_phase(4.0, 0.02)
    acquire([bucket])  # the old 10 weigh 9.8 as the window starts: room for one ...
    with pytest.raises(RateLimited):
        acquire([bucket])  # ... and not two, where a fixed window would take ten
    # 55 % into the new window the old 10 weigh 4.5: with 1 taken, 5.5; five more fit (a call
    # fits while floor(4.5 + taken) + 1 <= 10), where a fixed window would take nine.
    _sleep_until_phase(4.0, 0.55)
    taken = 0
    with pytest.raises(RateLimited):
        for _ in range(10):
            acquire([bucket])
            taken += 1
    assert taken == 5


def test_token_reservation_is_settled_to_real_usage():
    bucket = ratelimit.Bucket("agent:test-tpm", rpm=None, tpm=100, max_concurrent=None)
    lease = acquire([bucket], estimate=80)
    assert lease.headers["x-ratelimit-remaining-tokens"] == "20"
    with pytest.raises(RateLimited) as info:
        acquire([bucket], estimate=30)
    assert info.value.details["limit"] == "tokens"
    settle(lease, 10)  # the call used far less than reserved
    assert acquire([bucket], estimate=30).headers["x-ratelimit-remaining-tokens"] == "60"


def test_limits_still_hold_after_redis_forgot_the_script():
    # A restarted (or flushed) Redis has no cached script: the EVALSHA miss falls back to EVAL.
    from daarion.infra.redis_client import get_redis

    bucket = ratelimit.Bucket("agent:test-flushed", rpm=2, tpm=None, max_concurrent=None)
    acquire([bucket])
    get_redis().script_flush()
    assert acquire([bucket]).headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimited):
        acquire([bucket])


def _tpm_used(lease) -> int:
    from daarion.infra.redis_client import get_redis

    return int(get_redis().get(lease.token_keys[0]) or 0)


def test_a_token_settle_reaches_redis_soon_without_a_following_call():
    # Other replicas read the counter in Redis: the correction must not wait for this
    # process's next call.
    import asyncio

    bucket = ratelimit.Bucket("agent:test-tpm-late", rpm=None, tpm=1000, max_concurrent=None)
    lease = acquire([bucket], estimate=300)
    assert _tpm_used(lease) == 300

    async def settle_and_wait() -> None:
        await ratelimit.settle(lease, actual_tokens=40)
        await asyncio.sleep(ratelimit.SETTLE_DELAY_S * 10)

    asyncio.run(settle_and_wait())
    assert _tpm_used(lease) == 40


def test_a_settle_after_its_window_expired_does_not_recreate_the_counter():
    # A call that outlives its window (a long stream across a minute boundary) settles into a
    # counter Redis already dropped; INCRBY would bring it back without an expiry, forever.
    from daarion.infra.redis_client import get_redis

    bucket = ratelimit.Bucket("agent:test-tpm-expired", rpm=None, tpm=1000, max_concurrent=2)
    lease = acquire([bucket], estimate=300)
    get_redis().delete(lease.token_keys[0])  # what the window's expiry does
    settle(lease, 10)
    assert not get_redis().exists(lease.token_keys[0])
    lone = acquire([ratelimit.Bucket("agent:test-tpm-expired-2", rpm=None, tpm=1000, max_concurrent=None)], estimate=50)
    get_redis().delete(lone.token_keys[0])
    settle(lone, 5)
    async_to_sync(ratelimit.flush_settles)()
    assert not get_redis().exists(lone.token_keys[0])


def test_a_request_bigger_than_the_budget_runs_alone_in_an_empty_window():
    bucket = ratelimit.Bucket("agent:test-big", rpm=None, tpm=50, max_concurrent=None)
    acquire([bucket], estimate=500)
    with pytest.raises(RateLimited):
        acquire([bucket], estimate=1)


def test_concurrency_slots_are_released_on_settle():
    bucket = ratelimit.Bucket("agent:test-conc", rpm=None, tpm=None, max_concurrent=2)
    first, second = acquire([bucket]), acquire([bucket])
    with pytest.raises(RateLimited) as info:
        acquire([bucket])
    assert info.value.details["limit"] == "concurrency"
    settle(first, 5)
    third = acquire([bucket])
    settle(second, 5)
    settle(third, 5)


def test_a_refusal_in_one_bucket_takes_nothing_from_the_others():
    roomy = ratelimit.Bucket("agent:roomy", rpm=10, tpm=None, max_concurrent=None)
    full = ratelimit.Bucket("microdao:full", rpm=1, tpm=None, max_concurrent=None)
    acquire([full])
    with pytest.raises(RateLimited):
        acquire([roomy, full])
    assert acquire([roomy]).headers["x-ratelimit-remaining-requests"] == "9", "the refused call took no slot"


@pytest.mark.django_db
def test_buckets_follow_the_policies(make_agents):
    make_agents("agent:vip")
    services.rate_limit_policy_create(scope="default", rpm=5)
    services.rate_limit_policy_create(scope="agent", subject="agent:vip", rpm=50)
    services.rate_limit_policy_create(scope="microdao", subject="microdao:7", tpm=1000)
    registry = load_registry()
    assert [b.name for b in ratelimit.buckets_for(registry, agent_id="agent:a", microdao_id="microdao:7")] == [
        "agent:agent:a",
        "microdao:microdao:7",
    ]
    vip = ratelimit.buckets_for(registry, agent_id="agent:vip", microdao_id=None)
    assert [(b.name, b.rpm) for b in vip] == [("agent:agent:vip", 50)]
    assert ratelimit.buckets_for(registry, agent_id=None, microdao_id="microdao:8")[0].name == "agent:anonymous"


@pytest.fixture(scope="module")
def second_server(server_env, tmp_path_factory):
    """Another web process on the same database and Redis (and quick heartbeats)."""
    server = start_asgi_server(
        {**server_env, "DATABASE_POOL": "1", "DAARION_LLM_HEARTBEAT_SECONDS": "0.2"},
        tmp_path_factory.mktemp("llm-second"),
        name="web-llm-2",
    )
    yield server
    server.stop()


def _proxy(base_url: str, headers: dict, agent: str, model: str = "dagi-stub") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "metadata": {"agent_id": agent}}
    return httpx.post(f"{base_url}/internal/llm/proxy", json=body, headers=headers, timeout=30)


def test_limits_are_exact_across_two_server_processes(api, second_server, stub_model, llm_headers, live, make_agents):
    make_agents("agent:limited", "agent:policy-probe")
    services.rate_limit_policy_create(scope="agent", subject="agent:limited", rpm=7)
    live()
    urls = [str(api.base_url).rstrip("/"), second_server.url]
    # The second server must also see the policy before we count.
    assert wait_for(lambda: _proxy(second_server.url, llm_headers, "agent:probe").status_code == 200)

    def probe() -> bool:
        return "x-ratelimit-limit-requests" in _proxy(second_server.url, llm_headers, "agent:policy-probe").headers

    services.rate_limit_policy_create(scope="agent", subject="agent:policy-probe", rpm=1000)
    assert wait_for(probe), "the second server picked up the policies"
    inside_one_minute()
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda i: _proxy(urls[i % 2], llm_headers, "agent:limited"), range(20)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 7, statuses
    assert statuses.count(429) == 13
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "7"
    served = next(r for r in responses if r.status_code == 200)
    assert served.headers["x-ratelimit-limit-requests"] == "7"


def test_concurrency_is_exact_across_two_processes(
    api, second_server, stub_model, fake_provider, make_model, llm_headers, live, make_agents
):
    make_agents("agent:single", "agent:policy-probe")
    services.provider_update(provider=fake_provider, timeout_seconds=10)
    make_model("slowpoke", fake_provider, "slow:3")  # long enough that all four overlap
    services.rate_limit_policy_create(scope="agent", subject="agent:single", max_concurrent=1)
    services.rate_limit_policy_create(scope="agent", subject="agent:policy-probe", rpm=1000)
    live()
    assert wait_for(lambda: "x-ratelimit-limit-requests" in _proxy(second_server.url, llm_headers, "agent:policy-probe").headers)
    urls = [str(api.base_url).rstrip("/"), second_server.url]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda i: _proxy(urls[i % 2], llm_headers, "agent:single", "slowpoke"), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429, 429], statuses
    # The slot is free again once the call finished.
    assert _proxy(urls[1], llm_headers, "agent:single", "slowpoke").status_code == 200


def test_stream_heartbeats_while_waiting_for_the_first_token(api, second_server, fake_provider, make_model, llm_headers, live):
    make_model("slowpoke", fake_provider, "slow:1")
    live()
    body = {"model": "slowpoke", "messages": [{"role": "user", "content": "hi"}]}

    def heartbeat_then_text() -> bool:
        text = httpx.post(f"{second_server.url}/internal/llm/stream", json=body, headers=llm_headers, timeout=30).text
        return ": heartbeat" in text and text.index(": heartbeat") < text.index('"text-delta"')

    assert wait_for(heartbeat_then_text, timeout=15)


@pytest.fixture
def unreachable_redis():
    """A factory of real Redis clients for a port nothing listens on (a real refused connection)."""
    import socket

    import redis.asyncio as aioredis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return lambda: aioredis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)


def test_without_redis_calls_are_let_through_by_default(unreachable_redis, settings, monkeypatch):
    assert settings.LLM_RATE_LIMIT_WHEN_REDIS_DOWN == "allow"
    monkeypatch.setattr(ratelimit, "get_async_redis", unreachable_redis)
    bucket = ratelimit.Bucket("agent:test-no-redis", rpm=1, tpm=None, max_concurrent=None)
    assert acquire([bucket]) is None
    assert acquire([bucket]) is None  # nothing counted, nothing refused


def test_without_redis_calls_are_refused_when_the_operator_says_so(unreachable_redis, settings, monkeypatch):
    settings.LLM_RATE_LIMIT_WHEN_REDIS_DOWN = "refuse"
    monkeypatch.setattr(ratelimit, "get_async_redis", unreachable_redis)
    bucket = ratelimit.Bucket("agent:test-no-redis", rpm=1, tpm=None, max_concurrent=None)
    with pytest.raises(ServiceUnavailable) as info:
        acquire([bucket])
    assert info.value.status == 503
    assert info.value.type == "rate_limiter_unavailable"
    assert info.value.headers["Retry-After"] == "1"


def test_a_pending_settle_survives_a_refused_acquire(unreachable_redis, settings, monkeypatch):
    """The token correction an acquire carried when it could not reach Redis is put back, and
    the next acquire that reaches Redis applies it before its own check."""
    bucket = ratelimit.Bucket("agent:test-settle-outage", rpm=None, tpm=100, max_concurrent=None)
    lease = acquire([bucket], estimate=80)
    monkeypatch.setattr(ratelimit, "SETTLE_DELAY_S", 60.0)  # the settle waits for the next acquire
    settle(lease, 10)
    settings.LLM_RATE_LIMIT_WHEN_REDIS_DOWN = "refuse"
    with monkeypatch.context() as outage:
        outage.setattr(ratelimit, "get_async_redis", unreachable_redis)
        with pytest.raises(ServiceUnavailable):
            acquire([bucket], estimate=30)
    # 100 - 80 reserved + 70 given back by the settle - 30 reserved now.
    assert acquire([bucket], estimate=30).headers["x-ratelimit-remaining-tokens"] == "60"


def test_an_unknown_outage_policy_stops_the_process_at_start():
    import os
    import subprocess
    import sys

    env = {**os.environ, "DAARION_LLM_RATE_LIMIT_WHEN_REDIS_DOWN": "maybe"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DAARION_LLM_RATE_LIMIT_WHEN_REDIS_DOWN must be allow or refuse, not 'maybe'" in result.stderr


def test_budget_periods_are_utc_days_and_calendar_months():
    from datetime import UTC, datetime

    late = datetime(2026, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    assert ratelimit.budget_period_at("day", late) == ("2026-12-31", 500)
    assert ratelimit.budget_period_at("month", late) == ("2026-12", 500)
    leap = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    assert ratelimit.budget_period_at("month", leap) == ("2028-02", 12 * 3_600_000)
    assert ratelimit.budget_period_at("day", leap) == ("2028-02-29", 12 * 3_600_000)
    assert ratelimit.micro_usd("0.0123456") == 12_345 and ratelimit.micro_usd(None) == 0


def test_a_budget_refuses_calls_once_the_periods_spend_reaches_it():
    from datetime import UTC, datetime

    bucket = ratelimit.Bucket(
        "agent:test-budget", rpm=None, tpm=None, max_concurrent=None, budget_micro_usd=10_000, budget_period="day"
    )  # 0.01 USD a day
    first = acquire([bucket])
    assert first.headers["x-daarion-budget-remaining-usd"] == "0.010000"
    async_to_sync(ratelimit.settle)(first, actual_tokens=10, cost_usd="0.006")
    second = acquire([bucket])  # under the budget: it may start (the first's cost rode along)
    assert second.headers["x-daarion-budget-remaining-usd"] == "0.004000"
    async_to_sync(ratelimit.settle)(second, actual_tokens=10, cost_usd="0.006")
    with pytest.raises(RateLimited) as info:
        acquire([bucket])
    error = info.value
    assert (error.status, error.type, error.details["limit"], error.details["period"]) == (
        429,
        "budget_exceeded",
        "budget",
        "day",
    )
    _, left_ms = ratelimit.budget_period_at("day", datetime.now(UTC))
    assert abs(int(error.headers["Retry-After"]) - left_ms / 1000) <= 2  # when the day (UTC) ends
    other = ratelimit.Bucket(
        "agent:test-budget-other", rpm=None, tpm=None, max_concurrent=None, budget_micro_usd=10_000, budget_period="day"
    )
    assert acquire([other]) is not None  # a budget per bucket


def test_only_the_current_periods_spend_counts():
    from datetime import UTC, datetime

    from daarion.infra.redis_client import get_redis, key

    bucket = ratelimit.Bucket(
        "agent:test-budget-month", rpm=None, tpm=None, max_concurrent=None, budget_micro_usd=1_000, budget_period="month"
    )
    get_redis().set(key("llm", "rl", bucket.name, "spend", "2020-01"), 10**9)  # an old month, spent out
    period, left_ms = ratelimit.budget_period_at("month", datetime.now(UTC))  # before: it only shrinks
    lease = acquire([bucket])
    assert lease.headers["x-daarion-budget-remaining-usd"] == "0.001000"
    counter = key("llm", "rl", bucket.name, "spend", period)
    assert 0 < get_redis().pttl(counter) <= left_ms + 86_400_000  # gone a day after the month


@pytest.mark.django_db(transaction=True)
def test_a_spend_budget_over_http_refuses_once_spent_and_records_the_refusal(
    api, stub_provider, make_model, llm_headers, live, make_agents
):
    from decimal import Decimal

    from apps.llm.tests.conftest import usage_rows

    make_agents("agent:budgeted", "agent:budget-probe")
    make_model("dagi-pricey", stub_provider, "dagi-stub", input_price_per_mtok=100_000, output_price_per_mtok=100_000)
    live()
    base = str(api.base_url).rstrip("/")
    probe = _proxy(base, llm_headers, "agent:budget-probe", model="dagi-pricey")
    assert probe.status_code == 200, probe.text
    cost = Decimal(probe.json()["usage"]["total_tokens"]) / 10  # 100,000 USD per 1M tokens
    # Room for two calls made one after another, not three: each may start under the budget.
    services.rate_limit_policy_create(scope="agent", subject="agent:budgeted", budget_usd=cost * 3 / 2, budget_period="day")
    services.rate_limit_policy_create(scope="agent", subject="agent:budget-probe", budget_usd=10**6)
    assert wait_for(
        lambda: "x-daarion-budget-remaining-usd" in _proxy(base, llm_headers, "agent:budget-probe", model="dagi-pricey").headers
    ), "the policies are live"
    answers = [_proxy(base, llm_headers, "agent:budgeted", model="dagi-pricey") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
    assert [Decimal(a.headers["x-daarion-budget-remaining-usd"]) for a in answers[:2]] == [cost * 3 / 2, cost / 2]
    error = answers[2].json()["error"]
    assert (error["type"], error["details"]["period"]) == ("budget_exceeded", "day")
    assert 1 <= int(answers[2].headers["retry-after"]) <= 86_400
    rows = usage_rows(count=3, agent_id="agent:budgeted")
    assert [(r.status, r.error_type) for r in rows] == [("ok", ""), ("ok", ""), ("refused", "budget_exceeded")]
    assert [r.cost for r in rows[:2]] == [cost, cost]
