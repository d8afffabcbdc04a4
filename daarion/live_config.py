"""Process-local snapshots of database-backed configuration, kept fresh through Redis.

The hot paths (auth, the LLM registry, the tool registry) must not read the database per
request. Each keeps a `LiveSnapshot`: the data is loaded once and reloaded only when the
Redis version key of its name changes. Writers call `bump_version(name)` after they commit;
every process notices within LIVE_CONFIG_CHECK_INTERVAL seconds, and between checks a
request costs no I/O at all.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from daarion.redis_client import get_async_redis, get_redis, key

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
        for snapshot in _SNAPSHOTS.get(name, []):
            snapshot.invalidate()

    transaction.on_commit(_bump)


async def aread_versions(names: Sequence[str]) -> list[bytes | None]:
    """The current Redis versions of `names` (None: never bumped), for a watcher that wants to
    know when a configuration changed without holding a snapshot of it."""
    return await get_async_redis().mget([_version_key(name) for name in names])


_SNAPSHOTS: dict[str, list["LiveSnapshot"]] = {}


class LiveSnapshot(Generic[T]):
    """Holds `loader()`'s result and reloads it when the Redis version of `name` moves.

    `max_age` bounds staleness even if Redis cannot be reached (a missed bump).
    """

    def __init__(self, name: str, loader: Callable[[], T], *, max_age: float = 60.0) -> None:
        self.name = name
        self._loader = loader
        self._max_age = max_age
        self._value: T | None = None
        self._version: bytes | None = None
        self._loaded_at = 0.0
        self._checked_at = 0.0
        self._lock = threading.Lock()
        _SNAPSHOTS.setdefault(name, []).append(self)

    def invalidate(self) -> None:
        self._checked_at = 0.0
        self._loaded_at = 0.0

    def _is_fresh(self, now: float) -> bool:
        return (
            self._value is not None
            and now - self._checked_at < settings.LIVE_CONFIG_CHECK_INTERVAL
            and now - self._loaded_at < self._max_age
        )

    def get(self, *, recheck: bool = False) -> T:
        """Sync access; may read Redis (rarely) and the database (on change).

        `recheck=True` asks Redis now even inside the check interval, for a caller that
        just missed (a token created a moment ago must work at once).
        """
        now = time.monotonic()
        if not recheck and self._is_fresh(now):
            return self._value  # type: ignore[return-value]
        with self._lock:
            now = time.monotonic()
            if not recheck and self._is_fresh(now):
                return self._value  # type: ignore[return-value]
            try:
                version = get_redis().get(_version_key(self.name))
            except Exception:  # noqa: BLE001 - fall back to the age bound
                logger.warning("config version check failed", extra={"config": self.name})
                version = self._version
            stale = (
                self._value is None
                or version != self._version
                or now - self._loaded_at >= self._max_age
            )
            if stale:
                self._value = self._loader()
                self._version = version
                self._loaded_at = now
            self._checked_at = now
            return self._value  # type: ignore[return-value]

    async def aget(self, *, recheck: bool = False) -> T:
        """Async access: the common case returns at once; a check or reload runs in a thread."""
        if not recheck and self._is_fresh(time.monotonic()):
            return self._value  # type: ignore[return-value]
        return await sync_to_async(self._get_in_pool_thread, thread_sensitive=False)(recheck)

    def _get_in_pool_thread(self, recheck: bool) -> T:
        """get() from an executor thread, which outlives the call: a reload's database
        connection goes back (to the pool with DATABASE_POOL) as the end of a request would give
        it back, instead of staying open, idle, in a thread that may not read again for hours."""
        try:
            return self.get(recheck=recheck)
        finally:
            if not connection.in_atomic_block:
                connection.close()
