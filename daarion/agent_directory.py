"""Which agent ids exist, for apps that must not import apps.agents (toolcore checks a tool's
`allowed_agents` with it).

The agents app registers the one resolver in its AppConfig.ready(); the rule stays in the
apps that use it, and the dependency keeps pointing at `daarion`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Given distinct ids, returns those of them that name no agent, in the order given.
AgentResolver = Callable[[list[str]], list[str]]

_resolver: AgentResolver | None = None


def register_agent_resolver(resolver: AgentResolver) -> None:
    """Sets the resolver, once per process (registering the same one again is a no-op)."""
    global _resolver
    if _resolver is not None and _resolver is not resolver:
        raise RuntimeError(f"an agent resolver is registered already: {_resolver!r}")
    _resolver = resolver


def unknown_agent_ids(ids: Iterable[str]) -> list[str]:
    """The ids among `ids` that name no agent (each once, in the order given).

    With no resolver registered (toolcore used without the agents app) there is no directory
    to check against, so every id is accepted.
    """
    wanted = list(dict.fromkeys(ids))
    if _resolver is None or not wanted:
        return []
    return _resolver(wanted)
