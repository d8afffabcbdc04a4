"""ORM calls from the turn's async code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

T = TypeVar("T")


def in_db_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`fn` (sync ORM code) as a coroutine function run in an executor thread that gives its
    database connection back afterwards (to the pool with DATABASE_POOL): executor threads
    outlive the call and would otherwise each hold a connection, idle, for hours."""

    def _run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return sync_to_async(_run, thread_sensitive=False)
