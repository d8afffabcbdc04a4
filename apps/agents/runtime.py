"""Which agents are loaded, shared by every web process through one Redis hash.

An agent's state is `loaded:<unix time>` or `unloaded:<unix time>`; an agent with no state
(created since, through any door) counts as loaded, so it can chat at once in every process,
while an operator's explicit unload is a state and is honoured everywhere. Blueprints
themselves come from the live snapshot in selectors, so an edited agent is used in its new
version by every process within a second, with no reload step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from apps.agents.selectors import Blueprint, ablueprint_get
from apps.agents.services import RUNTIME_STATE_KEY
from daarion.infra.errors import Conflict
from daarion.infra.redis_client import LuaScript, get_async_redis, key

LOADED = "loaded"
UNLOADED = "unloaded"

# Set the state only when the agent is not in it already, in one atomic step (runtime_load.lua,
# runtime_unload.lua).
_LOAD_SCRIPT = LuaScript.load(__file__, "runtime_load.lua")
_UNLOAD_SCRIPT = LuaScript.load(__file__, "runtime_unload.lua")


@dataclass(frozen=True)
class RuntimeState:
    loaded: bool
    since: float | None  # unix time of the last load/unload


def _state_key() -> str:
    return key(*RUNTIME_STATE_KEY)


def _parse(raw: bytes | str | None) -> RuntimeState:
    if raw is None:
        # Never loaded or unloaded by hand: an enabled agent can chat as soon as it exists,
        # whichever door created it.
        return RuntimeState(loaded=True, since=None)
    text = raw.decode() if isinstance(raw, bytes) else raw
    state, _, when = text.partition(":")
    try:
        since = float(when)
    except ValueError:
        since = None
    return RuntimeState(loaded=state == LOADED, since=since)


async def runtime_states() -> dict[str, RuntimeState]:
    raw = await get_async_redis().hgetall(_state_key())
    return {(k.decode() if isinstance(k, bytes) else k): _parse(v) for k, v in raw.items()}


async def runtime_state(agent_id: str) -> RuntimeState:
    return _parse(await get_async_redis().hget(_state_key(), agent_id))


async def agent_load(*, agent_id: str) -> Blueprint:
    """200-path: the agent is now loaded. 404 unknown, 409 already loaded or disabled."""
    blueprint = await ablueprint_get(agent_id)
    if not blueprint.enabled:
        raise Conflict(
            f"agent {agent_id!r} is disabled; enable it before loading",
            type="agent_disabled",
            details={"agent_id": agent_id},
        )
    redis = get_async_redis()
    if not await _LOAD_SCRIPT(redis, [_state_key()], [agent_id, f"{LOADED}:{time.time():.3f}"]):
        raise Conflict(f"agent {agent_id!r} is already loaded", type="agent_already_loaded", details={"agent_id": agent_id})
    return blueprint


async def agent_unload(*, agent_id: str) -> Blueprint:
    blueprint = await ablueprint_get(agent_id)
    redis = get_async_redis()
    if not await _UNLOAD_SCRIPT(redis, [_state_key()], [agent_id, f"{UNLOADED}:{time.time():.3f}"]):
        raise Conflict(f"agent {agent_id!r} is not loaded", type="agent_not_loaded", details={"agent_id": agent_id})
    return blueprint


async def loaded_blueprint(agent_id: str) -> Blueprint:
    """The blueprint of an agent that may take a turn now: 404 unknown, 409 not loaded/disabled."""
    blueprint = await ablueprint_get(agent_id)
    if not blueprint.enabled:
        raise Conflict(f"agent {agent_id!r} is disabled", type="agent_disabled", details={"agent_id": agent_id})
    if not (await runtime_state(agent_id)).loaded:
        raise Conflict(
            f"agent {agent_id!r} is not loaded; POST /internal/agents/{agent_id}/load first",
            type="agent_not_loaded",
            details={"agent_id": agent_id},
        )
    return blueprint
