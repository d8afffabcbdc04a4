"""LiveSnapshot: what a reload off the event loop leaves behind."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from daarion.live_config import LiveSnapshot
from daarion.models import ServiceToken


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
