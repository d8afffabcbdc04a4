"""Memory's sync services called from async code: in a worker thread that gives its database
connection back when the call ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connection

P = ParamSpec("P")
T = TypeVar("T")


def closing_connection(fn: Callable[P, T]) -> Callable[P, T]:
    """Runs `fn` in a worker thread and gives its connection back (to the pool) afterwards;
    Django only closes connections of the request thread on its own.
    """

    def _run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return _run
