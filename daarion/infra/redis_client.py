"""Shared Redis clients: one sync client per process, one async client per event loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_clients: dict[int, aioredis.Redis] = {}
_blocking_clients: dict[int, aioredis.Redis] = {}

# Short timeouts: Redis is on the hot path, and a stalled Redis must fail fast, not hang
# every request behind it.
_CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "health_check_interval": 30}
# Socket timeout of the blocking-read client: its reads block up to a few seconds by design.
BLOCKING_READ_TIMEOUT = 30.0


def key(*parts: str) -> str:
    """A key under this deployment's prefix: key("llm", "version") -> "daarion:llm:version"."""
    return settings.REDIS_KEY_PREFIX + ":".join(parts)


def get_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL, **_CLIENT_OPTIONS)
    return _sync_client


def get_async_redis() -> aioredis.Redis:
    """The async client bound to the running loop (redis.asyncio clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, **_CLIENT_OPTIONS)
        _async_clients[id(loop)] = client
    return client


def get_async_redis_blocking() -> aioredis.Redis:
    """The async client for blocking reads (XREAD BLOCK) of the running loop: its own pool, so
    waiting readers never hold the short-call pool's connections, and a socket timeout well
    above any block time, so a busy loop that reads a reply late is not a failed read."""
    loop = asyncio.get_running_loop()
    client = _blocking_clients.get(id(loop))
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, **{**_CLIENT_OPTIONS, "socket_timeout": BLOCKING_READ_TIMEOUT})
        _blocking_clients[id(loop)] = client
    return client


def lua_source(beside: str, *names: str) -> str:
    """The text of the `.lua` files `names` in the folder of the module `beside` (its
    `__file__`), joined in order: a script's shared functions come first, then its body."""
    folder = Path(beside).parent
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in names)


class LuaScript:
    """A Lua script sent by its SHA1 (EVALSHA): its text travels once per Redis server, not
    per call; a Redis that does not know it (new, restarted, flushed) gets EVAL once.

    Scripts live in `.lua` files beside the module that runs them, read once at import
    (`LuaScript.load(__file__, "name.lua")`); each names its KEYS and ARGV slots in locals
    at its top."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    @classmethod
    def load(cls, beside: str, *names: str, prefix: str = "") -> LuaScript:
        """The script of the files `names` beside the module `beside`, after `prefix` (Lua
        functions it shares with other scripts)."""
        return cls(prefix + lua_source(beside, *names))

    async def __call__(self, client: aioredis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def call_sync(self, client: redis.Redis, keys: list[str], args: list[object]) -> object:
        """The same through a sync client."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


# Deletes a lock or lease only while it holds the caller's token: KEYS[1] the key, ARGV[1] the token.
release_if_held = LuaScript.load(__file__, "release_if_held.lua")
