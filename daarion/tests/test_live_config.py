"""LiveSnapshot: what a reload off the event loop leaves behind, and how it rides out an outage."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connections

from daarion.infra.live_config import LiveSnapshot
from apps.access.models import ServiceToken


@pytest.mark.django_db(transaction=True)
def test_a_reload_in_a_pool_thread_gives_its_database_connection_back():
    # Async callers reload in an executor thread that outlives the call; with DATABASE_POOL a
    # connection kept there is a pool slot held by a thread that may not read again for hours.
    used = []

    def loader() -> int:
        list(ServiceToken.objects.all()[:1])
        used.append(connections["default"])  # that thread's own connection
        return len(used)

    snapshot = LiveSnapshot("test-live-config-connection", loader)
    assert async_to_sync(snapshot.aget)(recheck=True) == 1
    assert async_to_sync(snapshot.aget)() == 1  # fresh: no reload, no thread
    assert used[0].connection is None, "the reload's connection is still open"


class _FlakyLoader:
    """A loader whose database goes away on demand (the error a stopped Postgres raises)."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.down:
            raise OperationalError("connection refused")
        return self.calls


@pytest.fixture
def flaky(settings):
    settings.LIVE_CONFIG_CHECK_INTERVAL = 0.0  # every get() checks: the reload path runs each time
    return _FlakyLoader()


def test_a_failed_reload_serves_the_last_good_copy_and_backs_off(flaky):
    snapshot = LiveSnapshot("test-live-config-stale", flaky, max_age=0.0)  # every check reloads
    assert snapshot.get() == 1
    flaky.down = True
    assert snapshot.get() == 1  # the reload failed: the old copy, no error
    assert snapshot.degraded
    tried = flaky.calls
    for _ in range(50):
        assert snapshot.get() == 1
        assert snapshot.get(recheck=True) == 1  # a miss does not force a reload during the backoff
    assert flaky.calls == tried, "reloads were retried inside the backoff"
    flaky.down = False
    snapshot._retry_at = 0.0  # the backoff has passed
    assert snapshot.get() == flaky.calls and not snapshot.degraded


def test_a_snapshot_that_never_loaded_raises_the_outage():
    loader = _FlakyLoader()
    loader.down = True
    snapshot = LiveSnapshot("test-live-config-cold", loader)
    with pytest.raises(OperationalError):
        snapshot.get()


def test_nobody_waits_on_the_reloader(flaky):
    # A reload stuck on the database (a pool timeout) holds the lock; other callers get the copy.
    snapshot = LiveSnapshot("test-live-config-lock", flaky, max_age=0.0)
    assert snapshot.get() == 1
    entered, release = threading.Event(), threading.Event()

    def slow_loader() -> int:
        entered.set()
        release.wait(30)
        return 99

    snapshot._loader = slow_loader
    reloader = threading.Thread(target=snapshot.get)
    reloader.start()
    try:
        assert entered.wait(30)
        assert snapshot.get() == 1  # returns at once with the copy it has; no deadlock, no wait
        assert async_to_sync(snapshot.aget)() == 1
    finally:
        release.set()
        reloader.join(30)
    assert snapshot.get() == 99


@pytest.mark.django_db(transaction=True)
def test_an_async_caller_never_waits_for_a_routine_check(settings):
    # A copy due for its check is served at once while one background task checks and
    # reloads: the request path never hops to a thread for it (it did, every second, on
    # every request until the check was back).
    import asyncio

    from daarion.infra.live_config import _version_key
    from daarion.infra.redis_client import get_redis

    loads = []
    release = threading.Event()

    def loader() -> int:
        loads.append(threading.current_thread().name)
        if len(loads) > 1:
            release.wait(5)  # a slow reload: the callers below must not wait for it
        return len(loads)

    snapshot = LiveSnapshot("test-live-config-background", loader)
    settings.LIVE_CONFIG_CHECK_INTERVAL = 0.0

    async def scenario() -> list[int]:
        assert await snapshot.aget() == 1  # the first load is waited for
        get_redis().set(_version_key("test-live-config-background"), "changed elsewhere")  # another process's write
        seen = [await snapshot.aget() for _ in range(50)]  # all served from the copy meanwhile
        assert snapshot._refresh is not None  # one background check, not fifty
        release.set()
        for _ in range(200):
            if snapshot._refresh is None:
                break
            await asyncio.sleep(0.01)
        seen.append(await snapshot.aget())
        return seen

    seen = async_to_sync(scenario)()
    assert seen[:50] == [1] * 50
    assert len(loads) == 2 and seen[-1] == 2  # the background check found the bump and reloaded
    # A write of this very process is seen by its next read, as before (invalidate waits).
    snapshot.invalidate()
    release.set()
    assert async_to_sync(snapshot.aget)() == 3
