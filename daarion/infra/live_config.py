"""Process-local snapshots of database-backed configuration, kept fresh through Redis.

The hot paths (auth, the LLM registry, the tool registry) must not read the database per
request. Each keeps a `LiveSnapshot`: the data is loaded once and reloaded only when the
Redis version key of its name changes. Writers call `bump_version(name)` after they commit;
every process notices within LIVE_CONFIG_CHECK_INTERVAL seconds, and between checks a
request costs no I/O at all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from daarion.infra.redis_client import get_async_redis, get_redis, key

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _version_key(name: str) -> str:
    return key("config-version", name)


def bump_version(name: str) -> None:
    """Tells every process that `name` changed. Runs after the current transaction commits."""

    def _bump() -> None:
        try:
            # A fresh random value rather than INCR: a counter that was reset (Redis flushed,
            # restored) could return to a value a process already saw and be missed.
            get_redis().set(_version_key(name), uuid.uuid4().hex)
        except Exception:  # noqa: BLE001 - the change is committed; readers catch up on expiry
            logger.warning("could not bump config version", extra={"config": name}, exc_info=True)
        invalidate_local(name)

    transaction.on_commit(_bump)


def invalidate_local(name: str) -> None:
    """This process's snapshots of `name` reload on their next read, which waits for it: for a
    watcher that saw the version move and is about to tell someone (an MCP client told the
    tools changed must then list the new ones, not the copy a background check is replacing)."""
    for snapshot in _SNAPSHOTS.get(name, []):
        snapshot.invalidate()


async def aread_versions(names: Sequence[str]) -> list[bytes | None]:
    """The current Redis versions of `names` (None: never bumped), for a watcher that wants to
    know when a configuration changed without holding a snapshot of it."""
    return await get_async_redis().mget([_version_key(name) for name in names])


_SNAPSHOTS: dict[str, list["LiveSnapshot"]] = {}
# How long a `recheck` caller waits for a reload already under way before taking the copy.
RECHECK_WAIT_SECONDS = 0.25


class LiveSnapshot(Generic[T]):
    """Holds `loader()`'s result and reloads it when the Redis version of `name` moves.

    `max_age` bounds staleness even if Redis cannot be reached (a missed bump).

    An outage must not take the hot paths down with it: when a reload fails (Postgres down,
    pool timeout) the last good copy keeps being served, the failure is logged, and the next
    reload waits a backoff that doubles up to RELOAD_BACKOFF_MAX. One caller reloads at a time;
    while it does, every other caller is answered from the copy it holds instead of queueing on
    the lock. Only a snapshot that never loaded makes its callers wait, and fail.
    """

    RELOAD_BACKOFF_MIN = 0.5
    RELOAD_BACKOFF_MAX = 15.0

    def __init__(self, name: str, loader: Callable[[], T], *, max_age: float = 60.0) -> None:
        self.name = name
        self._loader = loader
        self._max_age = max_age
        self._value: T | None = None
        self._version: bytes | None = None
        self._loaded_at = 0.0
        self._checked_at = 0.0
        # After a failed reload: no new attempt before this (monotonic), the stale copy serves.
        self._retry_at = 0.0
        self._backoff = 0.0
        self._invalidated = False
        self._lock = threading.Lock()
        # The background check aget() started, while it runs (at most one per snapshot).
        self._refresh: asyncio.Task | None = None
        _SNAPSHOTS.setdefault(name, []).append(self)

    def invalidate(self) -> None:
        self._invalidated = True
        self._checked_at = 0.0
        self._loaded_at = 0.0
        self._retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while the last reload failed and an older copy is being served."""
        return self._backoff > 0

    def _is_fresh(self, now: float) -> bool:
        if self._value is None:
            return False
        if now < self._retry_at:
            return True  # a reload failed a moment ago: serve what we have until the backoff ends
        return now - self._checked_at < settings.LIVE_CONFIG_CHECK_INTERVAL and now - self._loaded_at < self._max_age

    def get(self, *, recheck: bool = False) -> T:
        """Sync access; may read Redis (rarely) and the database (on change).

        `recheck=True` asks Redis now even inside the check interval, for a caller that
        just missed (a token created a moment ago must work at once) — unless a reload failed
        within its backoff: a flood of unknown tokens must not hammer a database that is down.
        """
        now = time.monotonic()
        if self._value is not None and (now < self._retry_at or (not recheck and self._is_fresh(now))):
            return self._value
        if self._value is not None:
            # Another caller is reloading: nobody waits on it, except briefly a caller who just
            # missed (its token may be what that reload brings), and the callers after a write
            # of this very process (invalidate): they must see what it wrote.
            if self._invalidated:
                acquired = self._lock.acquire()
            elif recheck:
                acquired = self._lock.acquire(timeout=RECHECK_WAIT_SECONDS)
            else:
                acquired = self._lock.acquire(blocking=False)
            if not acquired:
                return self._value
        else:
            self._lock.acquire()  # nothing to serve yet: the first load must be waited for
        try:
            return self._check_and_reload(recheck)
        finally:
            self._lock.release()

    def _check_and_reload(self, recheck: bool) -> T:
        now = time.monotonic()
        if self._value is not None and (now < self._retry_at or (not recheck and self._is_fresh(now))):
            return self._value
        try:
            version = get_redis().get(_version_key(self.name))
        except Exception:  # noqa: BLE001 - fall back to the age bound
            logger.warning("config version check failed", extra={"config": self.name})
            version = self._version
        stale = self._value is None or version != self._version or now - self._loaded_at >= self._max_age
        if stale:
            self._invalidated = False
            try:
                value = self._loader()
            except Exception:
                if self._value is None:
                    raise  # nothing to fall back on: the caller's error handler names the cause
                self._backoff = min(max(self._backoff * 2, self.RELOAD_BACKOFF_MIN), self.RELOAD_BACKOFF_MAX)
                self._retry_at = time.monotonic() + self._backoff
                logger.warning(
                    "config reload failed; serving the copy loaded %.0f s ago, next try in %.1f s",
                    now - self._loaded_at,
                    self._backoff,
                    extra={"config": self.name},
                    exc_info=True,
                )
                return self._value
            if self._backoff:
                logger.info("config reloaded after an outage", extra={"config": self.name})
            self._value = value
            self._version = version
            self._loaded_at = now
            self._backoff = 0.0
            self._retry_at = 0.0
        self._checked_at = now
        return self._value  # type: ignore[return-value]

    async def aget(self, *, recheck: bool = False) -> T:
        """Async access that never makes a request wait for a routine check: a copy that is
        only due for its check (or its max_age) is served as it is while one background task
        checks Redis and reloads if the version moved. Only the first load, a `recheck`, and
        the callers after a write of this very process (invalidate) wait, in a thread."""
        now = time.monotonic()
        if self._value is not None and (now < self._retry_at or (not recheck and self._is_fresh(now))):
            return self._value
        if self._value is not None and not recheck and not self._invalidated:
            if self._refresh is None:
                self._refresh = asyncio.get_running_loop().create_task(self._refresh_in_background())
            return self._value
        return await sync_to_async(self._get_in_pool_thread, thread_sensitive=False)(recheck)

    async def _refresh_in_background(self) -> None:
        try:
            await sync_to_async(self._get_in_pool_thread, thread_sensitive=False)(False)
        except Exception:  # noqa: BLE001 - get() keeps the copy and logs; this is a last guard
            logger.warning("config check failed", extra={"config": self.name}, exc_info=True)
        finally:
            self._refresh = None

    def _get_in_pool_thread(self, recheck: bool) -> T:
        """get() from an executor thread, which outlives the call: a reload's database
        connection goes back (to the pool with DATABASE_POOL) as the end of a request would give
        it back, instead of staying open, idle, in a thread that may not read again for hours."""
        try:
            return self.get(recheck=recheck)
        finally:
            if not connection.in_atomic_block:
                connection.close()
