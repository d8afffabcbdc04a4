"""One executor per run: a lease in Redis that only its holder can renew or release.

`SET key token NX PX ttl` takes it; the holder renews it every third of its time while the
run is alive. A worker that dies stops renewing, the lease runs out, and the sweep marks the
run `interrupted`. Renew and release compare the token first (one Lua script each), so an
executor whose lease ran out can never extend or drop a lease another one took since.
"""

from __future__ import annotations

import secrets

from daarion.redis_client import LuaScript, get_async_redis, key

_RENEW = LuaScript(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = LuaScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")


def lease_key(run_id: str) -> str:
    return key("agents", "run", run_id, "lease")


class Lease:
    def __init__(self, run_id: str, *, seconds: float, holder: str) -> None:
        self.key = lease_key(run_id)
        self.ttl_ms = max(100, int(seconds * 1000))
        # The holder's name first (for operators reading Redis), then a random part that
        # makes this executor's token unique even on a redelivery to the same worker.
        self.token = f"{holder}:{secrets.token_hex(8)}"

    async def acquire(self) -> bool:
        return bool(await get_async_redis().set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await _RENEW(get_async_redis(), [self.key], [self.token, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await _RELEASE(get_async_redis(), [self.key], [self.token]))


async def lease_held(run_id: str) -> bool:
    return bool(await get_async_redis().exists(lease_key(run_id)))
