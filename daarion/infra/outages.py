"""Outages of the backing services as named, fast 503s.

A request that meets a Postgres or Redis outage must not answer a generic 500: every door
renders the error `outage_error` finds in the exception — `database_unavailable` or
`redis_unavailable`, status 503, `Retry-After` — in its own shape (the house envelope on
/internal and /api, OpenAI's or Anthropic's on /v1, JSON-RPC on /mcp). What each door answers
during an outage, and what is kept, is the "Outages" table of docs/OPERATIONS.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError as DjangoDatabaseError
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError

from daarion.infra.errors import ServiceUnavailable


class DatabaseUnavailable(ServiceUnavailable):
    type = "database_unavailable"


class RedisUnavailable(ServiceUnavailable):
    type = "redis_unavailable"


class RuntimeUnavailable(ServiceUnavailable):
    """No worker took the job it was given in time (the agents queue has no live executor)."""

    type = "runtime_unavailable"


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(settings.OUTAGE_RETRY_AFTER_SECONDS)}


def database_unavailable() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database cannot be reached; try again shortly", headers=_retry_after())


def redis_unavailable() -> RedisUnavailable:
    return RedisUnavailable("Redis cannot be reached; try again shortly", headers=_retry_after())


def _is_database_outage(exc: BaseException) -> bool:
    import psycopg
    import psycopg_pool

    if isinstance(
        exc,
        (
            DjangoOperationalError,
            DjangoInterfaceError,
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg_pool.PoolTimeout,
        ),
    ):
        return True
    # Django re-raises psycopg's errors as its own DatabaseError subclasses and keeps the original.
    return isinstance(exc, DjangoDatabaseError) and isinstance(
        exc.__cause__, (psycopg.OperationalError, psycopg_pool.PoolTimeout)
    )


def _is_redis_outage(exc: BaseException) -> bool:
    import kombu.exceptions
    import redis.exceptions

    # redis-py's TimeoutError is the stalled server; kombu's OperationalError is the broker.
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError))


def outage_error(exc: BaseException) -> ServiceUnavailable | None:
    """The named 503 for an exception raised by an outage of Postgres or Redis (looked for in
    the exception and what caused it), or None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_database_outage(current):
            return database_unavailable()
        if _is_redis_outage(current):
            return redis_unavailable()
        current = current.__cause__ or current.__context__
    return None
