"""Draining a Redis list into the database: the LLM usage records (apps/llm/usage.py) and the
tool-call audit (apps/tools/audit.py) wait in Redis lists and reach Postgres this way.

A drain reads a batch, hands it to its `store` (which writes it, idempotently: a batch stored
twice must insert once) and only then trims it from the list, so a drainer that dies half-way
leaves its batch to the next and nothing waiting in Redis is lost while Postgres is down. One
drainer at a time holds a Redis lock, and it trims only while it still holds it: a drainer
whose lock expired (a batch slower than the lock: Postgres stalled, the worker paused) must not
trim, since another drainer may have read the same items and trimmed them already, and a second
trim would drop items nobody wrote. Its batch is in the table; the next drainer replays it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from daarion.infra.redis_client import LuaScript, get_redis, release_if_held

logger = logging.getLogger(__name__)

_trim_if_held = LuaScript.load(__file__, "list_drain_trim.lua")


def drain_list(
    *,
    list_key: str,
    lock_key: str,
    lock_ms: int,
    batch_size: int,
    max_batches: int | None,
    store: Callable[[list[bytes]], int],
    what: str,
) -> int:
    """Moves batches of `list_key` through `store` (which returns how many of the batch are
    stored), at most `max_batches` (None: until the list is empty); returns how many were
    stored. 0 while another drainer holds `lock_key`."""
    client = get_redis()
    token = uuid.uuid4().hex
    if not client.set(lock_key, token, nx=True, px=lock_ms):
        return 0
    stored = 0
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            items = client.lrange(list_key, 0, batch_size - 1)
            if not items:
                break
            stored += store(items)
            if not _trim_if_held.call_sync(client, [lock_key, list_key], [token, len(items)]):
                logger.warning("%s drain outlived its lock; the next drain replays the batch", what)
                break
            batches += 1
    finally:
        release_if_held.call_sync(client, [lock_key], [token])
    return stored
