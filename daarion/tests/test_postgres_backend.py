"""The database backend's fail-fast window: a database that refuses connections fails the
next attempts at once; a pool whose connections are all busy does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import OperationalError, connections

from daarion.infra.postgres.base import DatabaseWrapper, _fail_until


def _pooled(alias: str, **overrides: object) -> dict:
    params = dict(connections["default"].settings_dict)
    params.update(overrides)
    params["CONN_MAX_AGE"] = 0
    params["OPTIONS"] = {**params["OPTIONS"], "pool": {"min_size": 1, "max_size": 1, "timeout": 0.3}}
    return params


@pytest.fixture
def wrappers() -> Iterator[list[DatabaseWrapper]]:
    made: list[DatabaseWrapper] = []
    yield made
    for wrapper in made:
        wrapper.close()
    for wrapper in made[:1]:
        wrapper.close_pool()
    for wrapper in made:
        _fail_until.pop(wrapper.alias, None)


@pytest.mark.django_db(transaction=True)
def test_a_busy_pool_is_not_an_outage(wrappers):
    params = _pooled("busy")
    holder, waiter = DatabaseWrapper(params, "busy-pool"), DatabaseWrapper(params, "busy-pool")
    wrappers += [holder, waiter]
    holder.ensure_connection()  # takes the pool's only connection
    with pytest.raises(OperationalError, match="couldn't get a connection"):
        waiter.ensure_connection()
    assert "busy-pool" not in _fail_until
    holder.close()  # back to the pool
    waiter.ensure_connection()  # at once: no window was opened
    assert waiter.is_usable()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_fails_the_next_attempts_at_once(wrappers):
    params = _pooled("down", HOST="/nonexistent-socket-dir", PORT="1")
    first, second = DatabaseWrapper(params, "down-pool"), DatabaseWrapper(params, "down-pool")
    wrappers += [first, second]
    with pytest.raises(OperationalError, match="couldn't get a connection"):
        first.ensure_connection()  # waited the pool timeout
    with pytest.raises(OperationalError, match="not waiting for it again yet"):
        second.ensure_connection()  # inside the window: refused without waiting
