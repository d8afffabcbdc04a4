"""Django's PostgreSQL backend, plus a fail-fast window while the database is unreachable.

With DATABASE_POOL, a request that needs a connection while Postgres is down waits the pool's
timeout before it fails; a request that touches the database twice waits twice, and every
concurrent request waits too. After a connection attempt fails, this backend refuses further
attempts of the process for DATABASE_OUTAGE_FAIL_FAST_SECONDS at once (the same
OperationalError, so every door answers 503 database_unavailable), then lets one caller try
again while the others keep failing fast: one caller pays the wait per window, not all. A pool
timeout with the database reachable (every connection busy) does not open the window.
Without a pool a connect fails at once anyway (or within connect_timeout) and nothing changes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base
from psycopg_pool import PoolTimeout

# alias -> monotonic time before which new connections fail at once (no entry: healthy).
_fail_until: dict[str, float] = {}
_lock = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool is None:
            return super().get_new_connection(conn_params)
        window = settings.DATABASE_OUTAGE_FAIL_FAST_SECONDS
        now = time.monotonic()
        with _lock:
            until = _fail_until.get(self.alias)
            if until is not None:
                if now < until:
                    raise self.Database.OperationalError(
                        "the database could not be reached a moment ago; not waiting for it again yet"
                    )
                # This caller probes; the others fail fast until it knows.
                _fail_until[self.alias] = now + window + float(self.pool.timeout)
        try:
            connection = super().get_new_connection(conn_params)
        except PoolTimeout:
            # Every pooled connection busy (a burst) is not an outage: only a database that
            # refuses a connection of its own opens the window.
            if not self._reachable(conn_params):
                self._fail_fast_for(window)
            raise
        except self.Database.OperationalError:
            self._fail_fast_for(window)
            raise
        if until is not None:
            with _lock:
                _fail_until.pop(self.alias, None)
        return connection

    def _fail_fast_for(self, window: float) -> None:
        with _lock:
            _fail_until[self.alias] = time.monotonic() + window

    def _reachable(self, conn_params: dict[str, Any]) -> bool:
        try:
            self.Database.connect(**conn_params).close()
        except self.Database.Error:
            return False
        return True
