"""Which agent ids exist, for apps that must not import apps.agents (toolcore checks a tool's
`allowed_agents` with it).

The agents app registers the one resolver in its AppConfig.ready(); the rule stays in the
apps that use it, and the dependency keeps pointing at `daarion`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from daarion.infra.hooks import Hook

# Given distinct ids, returns those of them that name no agent, in the order given.
AgentResolver = Callable[[list[str]], list[str]]

resolver: Hook[AgentResolver] = Hook("an agent resolver")
register_agent_resolver = resolver.register


def unknown_agent_ids(ids: Iterable[str]) -> list[str]:
    """The ids among `ids` that name no agent (each once, in the order given).

    With no resolver registered (toolcore used without the agents app) there is no directory
    to check against, so every id is accepted.
    """
    wanted = list(dict.fromkeys(ids))
    if resolver.function is None or not wanted:
        return []
    return resolver.function(wanted)


# Given an agent id, returns its microDAO id, or None when no agent has that id.
MicrodaoResolver = Callable[[str], Awaitable[str | None]]

microdao_resolver: Hook[MicrodaoResolver] = Hook("an agent microDAO resolver")
register_microdao_resolver = microdao_resolver.register


async def agent_microdao(agent_id: str) -> str | None:
    """The microDAO the agent `agent_id` belongs to, from the agents' in-process snapshot; None
    for no such agent (or without the agents app)."""
    if microdao_resolver.function is None:
        return None
    return await microdao_resolver.function(agent_id)
