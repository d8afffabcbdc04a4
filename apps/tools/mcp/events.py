"""List-changed events for `/mcp` clients that listen (`subscriptions/listen`, 2026-07-28).

The SDK's `ListenHandler` serves the listen streams and asks a `SubscriptionBus` for events.
Ours learns of changes the way every snapshot does (daarion.infra.live_config): the Redis version of
a configuration moves when a write commits, in whichever process made it. While at least one
stream is open in this process, one task reads those versions every
LIVE_CONFIG_CHECK_INTERVAL seconds (one MGET) and turns a move into `ToolsListChanged` (the
tool registry) or `PromptsListChanged` (the configurations prompts are built from, named by
the apps that serve them). No stream open, no reads. So any web process can serve a listen
stream and hears of a change made through any other door or process.

An event says "this list changed, refetch": it is sent for any change of the registry, and the
refetch shows the caller only what its token may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from django.conf import settings
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ServerEvent,
    ToolsListChanged,
)

from apps.tools.registry import TOOLS_CONFIG
from daarion.infra import mcp_extensions
from daarion.infra.live_config import aread_versions, invalidate_local

logger = logging.getLogger(__name__)


class RegistryEvents:
    """A `SubscriptionBus` fed by the live-config versions of the registries behind /mcp."""

    def __init__(self) -> None:
        self._local = InMemorySubscriptionBus()
        self._listeners = 0
        self._watcher: asyncio.Task[None] | None = None
        # Versions last seen, kept while nobody listens: a change in between is announced to the
        # next listener as one (harmless) extra event rather than missed.
        self._seen: dict[str, bytes | None] | None = None

    def _sources(self) -> dict[str, ServerEvent]:
        sources: dict[str, ServerEvent] = {name: PromptsListChanged() for name in mcp_extensions.prompt_configs()}
        sources[TOOLS_CONFIG] = ToolsListChanged()
        return sources

    async def publish(self, event: ServerEvent) -> None:
        await self._local.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe_local = self._local.subscribe(listener)
        self._listeners += 1
        if self._watcher is None or self._watcher.done():
            # Called by the SDK on the server's event loop (the listen request's handler).
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="mcp-registry-events")
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            unsubscribe_local()
            self._listeners -= 1
            if self._listeners == 0 and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

        return unsubscribe

    async def baseline(self) -> None:
        """Reads the versions a first time, so a change right after a listener's ack is news."""
        if self._seen is None:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - Redis away: the watcher's first read is the baseline
                logger.warning("could not read registry versions for an MCP listen stream", exc_info=True)

    async def check(self) -> None:
        """Reads the versions once and publishes an event per source that moved."""
        sources = self._sources()
        names = sorted(sources)
        versions = dict(zip(names, await aread_versions(names), strict=True))
        seen, self._seen = self._seen, versions
        if seen is None:
            return
        moved = [name for name in names if versions[name] != seen.get(name, versions[name])]
        for name in moved:
            invalidate_local(name)  # a client told of the change must list what changed
        events = {sources[name] for name in moved}
        for event in sorted(events, key=lambda e: type(e).__name__):
            await self.publish(event)

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - Redis away: the streams stay open, the next read catches up
                logger.warning("could not read registry versions for MCP listen streams", exc_info=True)
            await asyncio.sleep(settings.LIVE_CONFIG_CHECK_INTERVAL)

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None


class RegistryListenHandler(ListenHandler):
    """The SDK's listen handler, acknowledging only once the versions to compare with are known."""

    def __init__(self, events: RegistryEvents, *, max_subscriptions: int) -> None:
        super().__init__(events, max_subscriptions=max_subscriptions)
        self.events = events

    async def __call__(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: types.SubscriptionsListenRequestParams,
    ) -> types.SubscriptionsListenResult:
        await self.events.baseline()
        return await super().__call__(ctx, params)
