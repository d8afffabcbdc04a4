"""Rate limits in Redis: one atomic Lua call per request checks and takes requests/min,
reserves an estimate of tokens/min and a concurrency slot in every applicable bucket, so the
limits hold exactly across processes and replicas. After the call the token reservation is
settled to the real usage and the slot is released."""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

from redis.exceptions import NoScriptError

from apps.llm.choices import RateLimitScope
from apps.llm.selectors import PolicySpec, Registry
from daarion.errors import RateLimited
from daarion.redis_client import get_async_redis, key

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
# A concurrency slot whose holder died (killed process) is forgotten after this long.
STALE_SLOT_MS = 15 * 60_000

# KEYS: per bucket (rpm key, tpm key, concurrency key). ARGV: now_ms, lease id, token
# estimate, stale ms, window reset ms, then per bucket (rpm, tpm, concurrency; 0 = no limit).
# Checks every bucket before taking anything, so a refusal leaves no trace.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local est = tonumber(ARGV[3])
local stale = tonumber(ARGV[4])
local reset_ms = tonumber(ARGV[5])
local n = #KEYS / 3
local remaining = {}
for i = 0, n - 1 do
  local rk, tk, ck = KEYS[i*3+1], KEYS[i*3+2], KEYS[i*3+3]
  local rpm, tpm, conc = tonumber(ARGV[6+i*3]), tonumber(ARGV[7+i*3]), tonumber(ARGV[8+i*3])
  local r_used, t_used = 0, 0
  if rpm > 0 then
    r_used = tonumber(redis.call('GET', rk) or '0')
    if r_used + 1 > rpm then return {0, i, 'requests', rpm, reset_ms} end
  end
  if tpm > 0 then
    t_used = tonumber(redis.call('GET', tk) or '0')
    -- A request bigger than the whole budget may still run alone in an empty window.
    if t_used > 0 and t_used + est > tpm then return {0, i, 'tokens', tpm, reset_ms} end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now - stale)
    if redis.call('ZCARD', ck) + 1 > conc then return {0, i, 'concurrency', conc, 1000} end
  end
  remaining[i+1] = {rpm - r_used - 1, tpm - t_used - est}
end
for i = 0, n - 1 do
  local rk, tk, ck = KEYS[i*3+1], KEYS[i*3+2], KEYS[i*3+3]
  local rpm, tpm, conc = tonumber(ARGV[6+i*3]), tonumber(ARGV[7+i*3]), tonumber(ARGV[8+i*3])
  if rpm > 0 then
    if redis.call('INCR', rk) == 1 then redis.call('PEXPIRE', rk, reset_ms + 5000) end
  end
  if tpm > 0 then
    redis.call('INCRBY', tk, est)
    redis.call('PEXPIRE', tk, reset_ms + 5000)
  end
  if conc > 0 then
    redis.call('ZADD', ck, now, lease)
    redis.call('PEXPIRE', ck, stale)
  end
end
return {1, remaining[1][1], remaining[1][2], reset_ms}
"""

# Sent by its SHA1 (EVALSHA): the script's 2 KB travel once per Redis server, not per call.
_ACQUIRE_SHA = hashlib.sha1(_ACQUIRE.encode()).hexdigest()


@dataclass(frozen=True)
class Bucket:
    name: str  # "agent:agent:sofia", "default:agent:x", "microdao:microdao:7", "deployment:12"
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None


@dataclass
class Lease:
    """What one request holds until it settles: token reservations and concurrency slots."""

    lease_id: str
    estimate: int
    token_keys: list[str] = field(default_factory=list)
    slot_keys: list[str] = field(default_factory=list)
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
        buckets.append(Bucket(f"agent:{subject}", policy.rpm, policy.tpm, policy.max_concurrent))
    if microdao_id:
        dao_policy = registry.policy_for(RateLimitScope.MICRODAO, microdao_id)
        if dao_policy is not None:
            buckets.append(Bucket(f"microdao:{microdao_id}", dao_policy.rpm, dao_policy.tpm, dao_policy.max_concurrent))
    return [b for b in buckets if b.rpm or b.tpm or b.max_concurrent]


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
    return max(1, math.ceil(chars / 4) + (max_tokens if max_tokens else 256))


async def acquire(buckets: list[Bucket], *, estimate: int) -> Lease | None:
    """Takes a slot in every bucket or raises 429. None when no limit applies (no Redis call)."""
    if not buckets:
        return None
    now_ms = int(time.time() * 1000)
    window = now_ms // WINDOW_MS
    reset_ms = (window + 1) * WINDOW_MS - now_ms
    keys: list[str] = []
    args: list[object] = [now_ms, uuid.uuid4().hex, estimate, STALE_SLOT_MS, reset_ms]
    for bucket in buckets:
        keys += [
            key("llm", "rl", bucket.name, "rpm", str(window)),
            key("llm", "rl", bucket.name, "tpm", str(window)),
            key("llm", "rl", bucket.name, "conc"),
        ]
        args += [bucket.rpm or 0, bucket.tpm or 0, bucket.max_concurrent or 0]
    client = get_async_redis()
    try:
        try:
            result = await client.evalsha(_ACQUIRE_SHA, len(keys), *keys, *args)
        except NoScriptError:  # a new or restarted Redis: EVAL loads the script for next time
            result = await client.eval(_ACQUIRE, len(keys), *keys, *args)
    except Exception:  # noqa: BLE001 - a Redis outage must not take every LLM call down with it
        logger.warning("rate limiter unavailable; letting the call through", exc_info=True)
        return None
    allowed = int(result[0])
    if not allowed:
        index, limit_name, limit, retry_ms = int(result[1]), _str(result[2]), int(result[3]), int(result[4])
        bucket = buckets[index]
        retry_after = max(1, math.ceil(retry_ms / 1000))
        headers = {"Retry-After": str(retry_after), **_limit_headers(bucket, limit_name, retry_ms)}
        raise RateLimited(
            f"rate limit of {bucket.name} reached: {limit} {_UNITS[limit_name]}; retry in {retry_after} s",
            details={"bucket": bucket.name, "limit": limit_name, "value": limit, "retry_after_seconds": retry_after},
            headers=headers,
        )
    lease = Lease(lease_id=str(args[1]), estimate=estimate)
    for index, bucket in enumerate(buckets):
        if bucket.tpm:
            lease.token_keys.append(keys[index * 3 + 1])
        if bucket.max_concurrent:
            lease.slot_keys.append(keys[index * 3 + 2])
    first = buckets[0]
    reset = f"{max(reset_ms, 0) / 1000:.3f}s"
    if first.rpm:
        lease.headers["x-ratelimit-limit-requests"] = str(first.rpm)
        lease.headers["x-ratelimit-remaining-requests"] = str(max(int(result[1]), 0))
        lease.headers["x-ratelimit-reset-requests"] = reset
    if first.tpm:
        lease.headers["x-ratelimit-limit-tokens"] = str(first.tpm)
        lease.headers["x-ratelimit-remaining-tokens"] = str(max(int(result[2]), 0))
        lease.headers["x-ratelimit-reset-tokens"] = reset
    return lease


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


async def settle(lease: Lease | None, *, actual_tokens: int) -> None:
    """Replaces the token estimate with the real count and frees the concurrency slots."""
    if lease is None or lease.settled:
        return
    lease.settled = True
    if not lease.token_keys and not lease.slot_keys:
        return
    try:
        pipe = get_async_redis().pipeline(transaction=False)
        delta = actual_tokens - lease.estimate
        for token_key in lease.token_keys:
            if delta:
                pipe.incrby(token_key, delta)
        for slot_key in lease.slot_keys:
            pipe.zrem(slot_key, lease.lease_id)
        await pipe.execute()
    except Exception:  # noqa: BLE001 - a stale slot expires after STALE_SLOT_MS
        logger.warning("could not settle a rate-limit lease", exc_info=True)
