"""One executor per run: a lease in Redis that only its holder can renew or release.

`SET key token NX PX ttl` takes it; the holder's process renews it every third of its time
while the run is alive (all its due leases in one script). A worker that dies stops renewing,
the lease runs out, and the sweep marks the run `interrupted`. Renew and release compare the
token first, so an executor whose lease ran out can never extend or drop a lease another one
took since.
"""

from __future__ import annotations

import secrets

from daarion.infra.redis_client import LuaScript, get_async_redis, key, release_if_held

# Many leases renewed in one round trip: KEYS are lease keys, ARGV their tokens then their
# times (ms), in the same order; returns 1 (renewed) or 0 (not this holder's any more) each.
_RENEW_MANY = LuaScript.load(__file__, "lease_renew_many.lua")


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

    async def release(self) -> bool:
        return bool(await release_if_held(get_async_redis(), [self.key], [self.token]))


async def leases_renew(leases: list[Lease]) -> list[bool]:
    """Renews each lease its holder still holds, in one round trip."""
    if not leases:
        return []
    answer = await _RENEW_MANY(
        get_async_redis(),
        [lease.key for lease in leases],
        [*(lease.token for lease in leases), *(lease.ttl_ms for lease in leases)],
    )
    return [bool(flag) for flag in answer]  # type: ignore[union-attr]


async def lease_held(run_id: str) -> bool:
    return bool(await get_async_redis().exists(lease_key(run_id)))
