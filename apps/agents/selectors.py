"""Reads of the agent registry: the process-local blueprint snapshot and admin-side queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from apps.agents.models import Agent
from apps.agents.services import AGENTS_CONFIG
from daarion.infra.errors import NotFound
from daarion.infra.live_config import LiveSnapshot


@dataclass(frozen=True)
class Blueprint:
    """What the runtime needs of an agent, detached from the ORM."""

    id: str
    name: str
    microdao_id: str
    enabled: bool
    model: str
    system_prompt: str
    character: dict[str, Any]
    memory_recall_limit: int
    memory_kinds: tuple[str, ...]
    max_tool_steps: int
    tool_mode: str
    temperature: float | None
    version: int
    history_turns: int = 10
    history_tokens: int = 4000
    # Decrypted; never rendered by an API except to a token with the agents:secrets scope.
    secrets: MappingProxyType = field(repr=False, default_factory=lambda: MappingProxyType({}))

    @property
    def secret_names(self) -> list[str]:
        return sorted(self.secrets)


def _blueprint(agent: Agent, secrets: dict[str, str]) -> Blueprint:
    return Blueprint(
        id=agent.id,
        name=agent.name,
        microdao_id=agent.microdao_id,
        enabled=agent.enabled,
        model=agent.model,
        system_prompt=agent.system_prompt,
        character=agent.character or {},
        memory_recall_limit=agent.memory_recall_limit,
        memory_kinds=tuple(agent.memory_kinds or ()),
        max_tool_steps=agent.max_tool_steps,
        tool_mode=agent.tool_mode,
        temperature=agent.temperature,
        version=agent.version,
        history_turns=agent.history_turns,
        history_tokens=agent.history_tokens,
        secrets=MappingProxyType(secrets),
    )


def _load_blueprints() -> dict[str, Blueprint]:
    agents = list(Agent.objects.prefetch_related("secrets"))
    return {agent.id: _blueprint(agent, {s.name: s.value for s in agent.secrets.all()}) for agent in agents}


# Agents are few and edited rarely: every process holds all blueprints, reloaded when an
# edit bumps the `agents` version (see live_config).
_blueprints: LiveSnapshot[dict[str, Blueprint]] = LiveSnapshot(AGENTS_CONFIG, _load_blueprints)


def blueprints_all() -> dict[str, Blueprint]:
    return _blueprints.get()


async def ablueprints_all() -> dict[str, Blueprint]:
    return await _blueprints.aget()


async def ablueprints_recheck() -> None:
    """Brings this process's blueprints up to date now (one Redis read when nothing changed)."""
    await _blueprints.aget(recheck=True)


async def ablueprint_get(agent_id: str) -> Blueprint:
    """The agent's current blueprint; 404 if there is no such agent."""
    blueprint = (await _blueprints.aget()).get(agent_id) or (await _blueprints.aget(recheck=True)).get(agent_id)
    if blueprint is None:
        raise NotFound(f"agent {agent_id!r} does not exist", type="agent_not_found", details={"agent_id": agent_id})
    return blueprint


def blueprint_get(agent_id: str) -> Blueprint:
    blueprint = _blueprints.get().get(agent_id) or _blueprints.get(recheck=True).get(agent_id)
    if blueprint is None:
        raise NotFound(f"agent {agent_id!r} does not exist", type="agent_not_found", details={"agent_id": agent_id})
    return blueprint


def agent_get(agent_id: str) -> Agent:
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(f"agent {agent_id!r} does not exist", type="agent_not_found", details={"agent_id": agent_id})
    return agent


async def aagent_microdao(agent_id: str) -> str | None:
    """The agent's microDAO from the blueprint snapshot (None: no such agent): the resolver
    behind daarion.infra.agent_directory.agent_microdao, which the LLM doors bind quotas with. A
    miss re-checks the snapshot once, so an agent created a moment ago counts."""
    blueprint = (await _blueprints.aget()).get(agent_id) or (await _blueprints.aget(recheck=True)).get(agent_id)
    return (blueprint.microdao_id or None) if blueprint is not None else None


def unknown_agent_ids(ids: list[str]) -> list[str]:
    """The ids among `ids` that name no agent: the resolver behind daarion.infra.agent_directory.

    One query on the table, not the snapshot: a registry document creates agents and the
    tools that allow them in one transaction, so uncommitted rows must count.
    """
    known = set(Agent.objects.filter(id__in=ids).values_list("id", flat=True))
    return [agent_id for agent_id in ids if agent_id not in known]


async def aagent_secrets(agent_id: str, names: tuple[str, ...]) -> dict[str, str]:
    """The agent's secrets among `names` that it has (non-empty ones), from the blueprint
    snapshot: the resolver behind daarion.infra.agent_secrets, which toolcore's REST and MCP doors
    ask for the secrets a tool declares. No other secret of the agent leaves this function.

    A name the snapshot lacks re-checks it at once (as a token or tool miss does), so a secret
    set a moment ago reaches the next call; a changed value is live within
    LIVE_CONFIG_CHECK_INTERVAL, as it is for the agent's turns.
    """

    def pick(blueprints: dict[str, Blueprint]) -> dict[str, str]:
        blueprint = blueprints.get(agent_id)
        if blueprint is None:
            return {}
        return {name: blueprint.secrets[name] for name in names if blueprint.secrets.get(name)}

    found = pick(await _blueprints.aget())
    if len(found) < len(names):
        found = pick(await _blueprints.aget(recheck=True))
    return found
