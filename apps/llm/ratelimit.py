"""Rate limits in Redis: one atomic Lua call per request checks and takes requests/min,
reserves an estimate of tokens/min and a concurrency slot in every applicable bucket, so the
limits hold exactly across processes and replicas. Per-minute counts are sliding windows (the
previous minute's count weighed by its share of the last 60 s; daarion/infra/sliding_window.py).
After the call the token reservation is settled to the real usage and the slot is released.

A settle that frees a concurrency slot goes to Redis before the caller gets its answer (the
next call, on any replica, must find the slot free). A settle of tokens alone is one number
to add to a counter: it waits in this process and rides along with the next acquire's script,
which applies it before its own checks (so this process's next call always sees it), or goes
out on its own within SETTLE_DELAY_S when no call follows. That saves a Redis round trip on
most calls; other replicas see the real token count at most SETTLE_DELAY_S late, and until
then they see the estimate, which is the larger number (a conservative error).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings

from apps.llm.choices import BudgetPeriod, RateLimitScope
from apps.llm.selectors import PolicySpec, Registry
from daarion.infra.errors import RateLimited, ServiceUnavailable
from daarion.observability import metrics
from daarion.infra.redis_client import LuaScript, get_async_redis, key
from daarion.infra.sliding_window import SLIDING_LUA, Window

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
# A concurrency slot whose holder died (killed process) is forgotten after this long.
STALE_SLOT_MS = 15 * 60_000

SETTLE_DELAY_S = 0.01
# The answer's tokens a call without a cap (max_tokens) is assumed to take, in estimates.
COMPLETION_ESTIMATE = 256

# Requests and tokens per minute are sliding-window counts (daarion/infra/sliding_window.py): this
# minute's count plus the previous minute's, weighted by its share of the last 60 s.
#
# A spend budget is a counter of micro-USD per budget period (a UTC day or month) holding what
# was spent plus what the calls in flight reserved: a call may start while that is under the
# budget, and reserves its estimated cost (its token estimate at the model's prices) as it
# starts; its settle replaces the estimate with the real cost. So calls in flight together can
# take the period past its budget by at most one call's estimate (the last one admitted), plus
# whatever the real costs exceed the estimates by. The acquire creates the period's counter, so
# the settle, which never creates a counter, finds it.
#
# The scripts (ratelimit_acquire.lua, ratelimit_settle.lua, with the settle_tokens function of
# ratelimit_settle_tokens.lua) name their KEYS and ARGV slots at their top.
_acquire_script = LuaScript.load(__file__, "ratelimit_settle_tokens.lua", "ratelimit_acquire.lua", prefix=SLIDING_LUA)
_settle_script = LuaScript.load(__file__, "ratelimit_settle_tokens.lua", "ratelimit_settle.lua")


class _PendingSettles:
    """Token corrections of finished calls not yet in Redis: counter key -> delta. Shared by
    every event loop of the process (the web loop, the in-process gateway's), hence the lock."""

    def __init__(self) -> None:
        self._deltas: dict[str, int] = {}
        self._lock = threading.Lock()
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled

    def _merge(self, deltas: dict[str, int]) -> None:  # with the lock held
        for token_key, delta in deltas.items():
            self._deltas[token_key] = self._deltas.get(token_key, 0) + delta

    def add(self, deltas: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._merge(deltas)
            # A flush scheduled on a loop that has stopped since (asyncio.run ended) never runs.
            if self._flush_loop is not None and self._flush_loop.is_running():
                return
            self._flush_loop = loop
        loop.call_later(SETTLE_DELAY_S, lambda: asyncio.ensure_future(self.flush()))

    def take(self) -> dict[str, int]:
        with self._lock:
            taken, self._deltas = self._deltas, {}
            return {k: v for k, v in taken.items() if v}

    def put_back(self, deltas: dict[str, int]) -> None:
        with self._lock:
            self._merge(deltas)

    async def flush(self) -> None:
        with self._lock:
            self._flush_loop = None
        deltas = self.take()
        if not deltas:
            return
        try:
            await _settle_script(get_async_redis(), list(deltas), [len(deltas), 0, "", *deltas.values()])
        except Exception:  # noqa: BLE001 - the next acquire or flush tries again
            self.put_back(deltas)
            logger.warning("could not settle token reservations; will retry", exc_info=True)


_pending = _PendingSettles()


@dataclass(frozen=True)
class Bucket:
    name: str  # "agent:agent:sofia", "default:agent:x", "microdao:microdao:7", "deployment:12"
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    budget_micro_usd: int = 0  # spend per budget_period in millionths of a USD; 0: no budget
    budget_period: str = BudgetPeriod.MONTH


def budget_period_at(period: str, now: datetime) -> tuple[str, int]:
    """(the budget period's id, for its counter's key; ms until it ends) at `now` (UTC)."""
    if period == BudgetPeriod.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end, period_id = start + timedelta(days=1), start.strftime("%Y-%m-%d")
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end, period_id = (start + timedelta(days=32)).replace(day=1), start.strftime("%Y-%m")
    return period_id, max(1, math.ceil((end - now).total_seconds() * 1000))


def micro_usd(amount: Decimal | float | int | str | None) -> int:
    """An amount in USD as whole millionths (what the spend counters count), rounded down."""
    if not amount:
        return 0
    return int(Decimal(str(amount)) * 1_000_000)


@dataclass
class Lease:
    """What one request holds until it settles: token reservations and concurrency slots."""

    lease_id: str
    estimate: int
    cost_estimate: int = 0  # micro-USD reserved in every budget's spend counter
    token_keys: list[str] = field(default_factory=list)
    slot_keys: list[str] = field(default_factory=list)
    spend_keys: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


def buckets_for(registry: Registry, *, agent_id: str | None, microdao_id: str | None) -> list[Bucket]:
    """The agent's own policy (or the default one, per agent) and the microDAO's policy."""
    buckets: list[Bucket] = []
    subject = agent_id or "anonymous"
    policy: PolicySpec | None = registry.policy_for(RateLimitScope.AGENT, agent_id) if agent_id else None
    if policy is None:
        policy = registry.policy_for(RateLimitScope.DEFAULT, "")
    if policy is not None:
        buckets.append(_bucket(f"agent:{subject}", policy))
    if microdao_id:
        dao_policy = registry.policy_for(RateLimitScope.MICRODAO, microdao_id)
        if dao_policy is not None:
            buckets.append(_bucket(f"microdao:{microdao_id}", dao_policy))
    return [b for b in buckets if b.rpm or b.tpm or b.max_concurrent or b.budget_micro_usd]


def _bucket(name: str, policy: PolicySpec) -> Bucket:
    return Bucket(name, policy.rpm, policy.tpm, policy.max_concurrent, micro_usd(policy.budget_usd), policy.budget_period)


def estimate_tokens(messages: list[dict], max_tokens: int | None) -> int:
    """A cheap upper-ish guess (4 characters a token) reserved before the call."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
        chars += 16
    return max(1, math.ceil(chars / 4) + (max_tokens if max_tokens else COMPLETION_ESTIMATE))


async def acquire(buckets: list[Bucket], *, estimate: int, cost_estimate: int = 0) -> Lease | None:
    """Takes a slot in every bucket or raises 429. None when no limit applies (no Redis call).
    `cost_estimate`: the call's estimated cost in micro-USD, reserved in each budget it counts
    against until the settle replaces it with the real cost."""
    if not buckets:
        return None
    now_ms = int(time.time() * 1000)
    window = Window.at(now_ms, WINDOW_MS)
    keys: list[str] = []
    lease_id = uuid.uuid4().hex
    limits: list[object] = []
    for bucket in buckets:
        period_id, period_ms = "none", 0  # a key never read: the bucket has no budget
        if bucket.budget_micro_usd:
            period_id, period_ms = budget_period_at(bucket.budget_period, datetime.fromtimestamp(now_ms / 1000, UTC))
        keys += [
            key("llm", "rl", bucket.name, "rpm", str(window.index)),
            key("llm", "rl", bucket.name, "tpm", str(window.index)),
            key("llm", "rl", bucket.name, "conc"),
            key("llm", "rl", bucket.name, "rpm", str(window.index - 1)),
            key("llm", "rl", bucket.name, "tpm", str(window.index - 1)),
            key("llm", "rl", bucket.name, "spend", period_id),
        ]
        limits += [bucket.rpm or 0, bucket.tpm or 0, bucket.max_concurrent or 0, bucket.budget_micro_usd, period_ms]
    settles = _pending.take()
    args: list[object] = [
        now_ms,
        lease_id,
        estimate,
        STALE_SLOT_MS,
        window.reset_ms,
        WINDOW_MS,
        window.expire_ms,
        len(buckets),
        len(settles),
        max(0, cost_estimate),
        *limits,
        *settles.values(),
    ]
    try:
        result = await _acquire_script(get_async_redis(), [*keys, *settles], args)
    except Exception:  # noqa: BLE001 - what an outage does is the operator's choice (below)
        _pending.put_back(settles)
        if settings.LLM_RATE_LIMIT_WHEN_REDIS_DOWN == "refuse":
            # Limits that guard spend must not lapse with Redis: refuse rather than count nothing.
            logger.warning("rate limiter unavailable; refusing the call", exc_info=True)
            raise ServiceUnavailable(
                "the rate limiter cannot be reached, and calls are refused until it can; retry shortly",
                type="rate_limiter_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        # The default: a Redis outage must not take every LLM call down with it.
        logger.warning("rate limiter unavailable; letting the call through", exc_info=True)
        return None
    allowed = int(result[0])
    if not allowed:
        index, limit_name, limit, retry_ms = int(result[1]), _str(result[2]), int(result[3]), int(result[4])
        bucket = buckets[index]
        retry_after = max(1, math.ceil(retry_ms / 1000))
        headers = {"Retry-After": str(retry_after), **_limit_headers(bucket, limit_name, retry_ms)}
        metrics.observe_limit_refusal(bucket.name, limit_name)
        if limit_name == "budget":
            raise _budget_exceeded(bucket, retry_after, headers)
        raise RateLimited(
            f"rate limit of {bucket.name} reached: {limit} {_UNITS[limit_name]}; retry in {retry_after} s",
            details={"bucket": bucket.name, "limit": limit_name, "value": limit, "retry_after_seconds": retry_after},
            headers=headers,
        )
    lease = Lease(lease_id=lease_id, estimate=estimate, cost_estimate=max(0, cost_estimate))
    for index, bucket in enumerate(buckets):
        if bucket.tpm:
            lease.token_keys.append(keys[index * 6 + 1])
        if bucket.max_concurrent:
            lease.slot_keys.append(keys[index * 6 + 2])
        if bucket.budget_micro_usd:
            lease.spend_keys.append(keys[index * 6 + 5])
    first = buckets[0]
    reset = f"{window.drained_ms / 1000:.3f}s"  # until the counts are back to none (OpenAI's meaning)
    if first.rpm:
        lease.headers["x-ratelimit-limit-requests"] = str(first.rpm)
        lease.headers["x-ratelimit-remaining-requests"] = str(max(int(result[1]), 0))
        lease.headers["x-ratelimit-reset-requests"] = reset
    if first.tpm:
        lease.headers["x-ratelimit-limit-tokens"] = str(first.tpm)
        lease.headers["x-ratelimit-remaining-tokens"] = str(max(int(result[2]), 0))
        lease.headers["x-ratelimit-reset-tokens"] = reset
    if first.budget_micro_usd:
        lease.headers["x-daarion-budget-remaining-usd"] = f"{max(int(result[3]), 0) / 1_000_000:.6f}"
    return lease


def _budget_exceeded(bucket: Bucket, retry_after: int, headers: dict[str, str]) -> RateLimited:
    budget = bucket.budget_micro_usd / 1_000_000
    return RateLimited(
        f"spend budget of {bucket.name} reached: {budget:.4f} USD per {bucket.budget_period}; it renews in {retry_after} s",
        type="budget_exceeded",
        details={
            "bucket": bucket.name,
            "limit": "budget",
            "value": budget,
            "period": bucket.budget_period,
            "retry_after_seconds": retry_after,
        },
        headers=headers,
    )


_UNITS = {"requests": "requests/min", "tokens": "tokens/min", "concurrency": "concurrent requests"}


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _limit_headers(bucket: Bucket, limit_name: str, retry_ms: int) -> dict[str, str]:
    reset = f"{retry_ms / 1000:.3f}s"
    headers: dict[str, str] = {}
    if bucket.rpm:
        headers["x-ratelimit-limit-requests"] = str(bucket.rpm)
        headers["x-ratelimit-remaining-requests"] = "0" if limit_name == "requests" else ""
        headers["x-ratelimit-reset-requests"] = reset
    if bucket.tpm:
        headers["x-ratelimit-limit-tokens"] = str(bucket.tpm)
        headers["x-ratelimit-remaining-tokens"] = "0" if limit_name == "tokens" else ""
        headers["x-ratelimit-reset-tokens"] = reset
    if bucket.max_concurrent:
        headers["x-ratelimit-limit-concurrent"] = str(bucket.max_concurrent)
    return {k: v for k, v in headers.items() if v != ""}


async def settle(lease: Lease | None, *, actual_tokens: int, cost_usd: Decimal | float | str = 0) -> None:
    """Replaces the token estimate with the real count, adds the call's cost to the budgets'
    spend and frees the concurrency slots (see the module's docstring for when each reaches
    Redis)."""
    if lease is None or lease.settled:
        return
    lease.settled = True
    delta = actual_tokens - lease.estimate
    deltas = {token_key: delta for token_key in lease.token_keys} if delta else {}
    # The spend counters hold the reserved estimate: they get the difference.
    spent = micro_usd(cost_usd) - lease.cost_estimate
    if spent:
        deltas.update(dict.fromkeys(lease.spend_keys, spent))
    if not lease.slot_keys:
        if deltas:
            _pending.add(deltas)
        return
    try:
        await _settle_script(
            get_async_redis(), [*deltas, *lease.slot_keys], [len(deltas), len(lease.slot_keys), lease.lease_id, *deltas.values()]
        )
    except Exception:  # noqa: BLE001 - a stale slot expires after STALE_SLOT_MS
        _pending.put_back(deltas)  # the counts go with the next acquire
        logger.warning("could not settle a rate-limit lease", exc_info=True)


async def flush_settles() -> None:
    """Sends the token settles waiting in this process now (tests, shutdown)."""
    await _pending.flush()
