"""A run's UI message chunks in a Redis Stream: written by its executor, read by any web
process (from the start, or after an SSE `Last-Event-ID`).

One stream per run (`<prefix>agents:run:<id>:chunks`), each entry `{c: <chunk json>}`; the
last entry is `{end: 1}`. The stream is capped (`XADD MAXLEN ~`) and expires
`AGENTS_RUN_RETENTION_SECONDS` after the run ends; the final message stays on the run row,
so a reader after that still gets the answer (`message.replay_chunks`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from redis.exceptions import TimeoutError as RedisTimeoutError

from daarion.infra.redis_client import get_async_redis, get_async_redis_blocking, key

# The longest single XREAD BLOCK (on the blocking-read client, whose socket timeout is far
# above it): quiet time is added up over several reads.
MAX_BLOCK_SECONDS = 5.0
CHUNK = b"c"
END = b"end"
# A Redis stream entry id; replayed chunks of an expired stream get ids `0-<n>`.
ENTRY_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


def stream_key(run_id: str) -> str:
    return key("agents", "run", run_id, "chunks")


def _dump(chunk: dict[str, Any]) -> str:
    return json.dumps(chunk, ensure_ascii=False, separators=(",", ":"), default=str)


async def chunks_append(run_id: str, chunks: list[dict[str, Any]]) -> None:
    """Appends chunks in one round trip."""
    if not chunks:
        return
    redis = get_async_redis()
    name = stream_key(run_id)
    cap = settings.AGENTS_RUN_STREAM_MAX_CHUNKS
    async with redis.pipeline(transaction=False) as pipe:
        for chunk in chunks:
            pipe.xadd(name, {CHUNK: _dump(chunk)}, maxlen=cap, approximate=True)
        await pipe.execute()


async def chunks_close(run_id: str, final: list[dict[str, Any]] | None = None) -> None:
    """Appends the last chunks and the end marker, and starts the retention clock."""
    redis = get_async_redis()
    name = stream_key(run_id)
    cap = settings.AGENTS_RUN_STREAM_MAX_CHUNKS
    async with redis.pipeline(transaction=True) as pipe:
        for chunk in final or ():
            pipe.xadd(name, {CHUNK: _dump(chunk)}, maxlen=cap, approximate=True)
        pipe.xadd(name, {END: b"1"}, maxlen=cap, approximate=True)
        pipe.expire(name, settings.AGENTS_RUN_RETENTION_SECONDS)
        await pipe.execute()


async def chunks_exist(run_id: str) -> bool:
    return bool(await get_async_redis().exists(stream_key(run_id)))


async def chunks_state(run_id: str) -> str:
    """`missing` (never written, or expired), `ended` (its end marker is written) or `open`."""
    last = await get_async_redis().xrevrange(stream_key(run_id), count=1)
    if not last:
        return "missing"
    return "ended" if END in last[0][1] else "open"


async def chunks_all(run_id: str) -> list[dict[str, Any]]:
    """Every chunk written so far (for folding a dead executor's partial answer)."""
    entries = await get_async_redis().xrange(stream_key(run_id))
    return [json.loads(fields[CHUNK]) for _, fields in entries if CHUNK in fields]


@dataclass
class Entry:
    """One read step: a chunk with its entry id, the end of the run, or a quiet interval."""

    id: str | None = None
    chunk: dict[str, Any] | None = None
    end: bool = False
    idle: bool = False


async def chunks_follow(run_id: str, *, after: str = "0-0", idle_seconds: float) -> AsyncIterator[Entry]:
    """Follows the run's stream after entry `after` until its end marker; yields an idle
    Entry whenever `idle_seconds` pass without an entry (the caller sends a heartbeat and may
    check whether the run can still end)."""
    redis = get_async_redis_blocking()
    name = stream_key(run_id)
    last = after
    step = min(idle_seconds, MAX_BLOCK_SECONDS)
    quiet = 0.0
    while True:
        try:
            answer = await redis.xread({name: last}, count=200, block=max(1, int(step * 1000)))
        except RedisTimeoutError:
            # A reply read late by a starved loop: the read is repeatable after `last`.
            answer = None
        if not answer:
            quiet += step
            if quiet >= idle_seconds:
                quiet = 0.0
                yield Entry(idle=True)
            continue
        quiet = 0.0
        for entry_id, fields in answer[0][1]:
            last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if END in fields:
                yield Entry(id=last, end=True)
                return
            yield Entry(id=last, chunk=json.loads(fields[CHUNK]))
