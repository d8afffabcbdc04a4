"""The worker process's event loop for runs.

A Celery worker of the `agents` queue runs a thread pool (`-P threads`): each task thread
hands its run to this one loop and waits for it, so one process holds many runs in flight
while their model streams, tool calls and Redis reads share a loop, its connection pools and
its clients (redis.asyncio and aiohttp clients cannot cross loops).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def _start() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    # sync_to_async(thread_sensitive=False) runs ORM calls on the loop's default executor;
    # many runs in flight need more than the default min(32, cores + 4) threads.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="agents-orm"))
    threading.Thread(target=loop.run_forever, name="agents-runs-loop", daemon=True).start()
    return loop


def run_in_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` on this process's runs loop and waits for its result."""
    global _loop, _pid
    with _lock:
        # A forked child (prefork pool) has the parent's loop object but not its thread.
        if _loop is None or _pid != os.getpid():
            _loop, _pid = _start(), os.getpid()
        loop = _loop
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
