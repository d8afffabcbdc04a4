"""An agent's decrypted secrets, for apps that must not import apps.agents (toolcore's REST and
MCP doors send the secrets a tool declares in `agent_secret_headers`).

The agents app registers the one resolver in its AppConfig.ready(), as it does for
`daarion.infra.agent_directory`; the dependency keeps pointing at `daarion`. Callers ask only for
the names they need, so no other secret of the agent leaves the agents app. Values must never
be logged, rendered or put in an error: only names may be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from daarion.infra.hooks import Hook

# Given an agent id and distinct secret names, returns {name: value} for those of the names
# the agent has (an unknown agent has none). Async: it reads an in-process snapshot that may
# need a reload off the event loop.
AgentSecretsResolver = Callable[[str, tuple[str, ...]], Awaitable[Mapping[str, str]]]

resolver: Hook[AgentSecretsResolver] = Hook("an agent secrets resolver")
register_agent_secrets_resolver = resolver.register


async def agent_secrets_for(agent_id: str, names: Iterable[str]) -> dict[str, str]:
    """The secrets of `agent_id` among `names` that it has ({} for an unknown agent).

    With no resolver registered (toolcore used without the agents app) no agent has secrets.
    """
    wanted = tuple(dict.fromkeys(names))
    if resolver.function is None or not wanted:
        return {}
    found = await resolver.function(agent_id, wanted)
    return {name: found[name] for name in wanted if name in found}
