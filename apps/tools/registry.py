"""The tool registry as the hot path sees it: an in-process snapshot of every tool, reloaded
when a write bumps its version (no database read per call; a change is live within a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from apps.tools.contracts import compile_validator, secret_paths
from daarion.infra.live_config import LiveSnapshot

logger = logging.getLogger(__name__)

TOOLS_CONFIG = "tools"
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class McpServerDefinition:
    """What the `mcp` executor needs of a tool's upstream server."""

    name: str
    url: str
    timeout: float
    enabled: bool
    protocol_version: str
    secret_headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as callers see it (the seed's ToolDefinition), plus what the call path needs."""

    id: str
    name: str
    description: str
    input_schema: dict
    output_schema: dict | None
    executor: str
    target: str
    allowed_agents: tuple[str, ...] | None
    timeout: float
    enabled: bool
    version: int
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    rate_limit_per_minute: int | None = None
    # Private to the call path: never rendered by public().
    secret_headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # header -> name of the calling agent's secret (names, not values: safe to show).
    agent_secret_headers: dict[str, str] = field(default_factory=dict)
    input_validator: Draft202012Validator | None = field(default=None, repr=False, compare=False)
    output_validator: Draft202012Validator | None = field(default=None, repr=False, compare=False)
    secret_arg_paths: tuple[tuple[str, ...], ...] = field(default=(), repr=False, compare=False)
    mcp_server: McpServerDefinition | None = field(default=None, compare=False)

    def allows(self, agent_id: str) -> bool:
        return self.allowed_agents is None or agent_id in self.allowed_agents

    def visible_to(self, agent_ids: Collection[str] | None) -> bool:
        """Whether a caller acting for `agent_ids` may see this tool: one of them may call it.

        None is a caller that may act for any agent (an unbound token): it sees every tool. A
        token bound to agents sees only their tools, so no listing, definition or refusal tells
        it that another agent's tool exists; a token bound to no agent (`[]`) sees none.
        """
        return agent_ids is None or any(self.allows(agent_id) for agent_id in agent_ids)

    @property
    def annotations(self) -> dict[str, bool]:
        return {"read_only": self.read_only, "destructive": self.destructive, "idempotent": self.idempotent}

    def allowed_agents_seen_by(self, agent_ids: Collection[str] | None) -> list[str] | None:
        """`allowed_agents` as a caller acting for `agent_ids` may see it.

        An unbound caller (None) sees the whole list. A bound one sees only its own agents in
        it, so a definition never names another agent; None (every agent) stays None, since
        it says nothing about which other agents exist.
        """
        if self.allowed_agents is None:
            return None
        if agent_ids is None:
            return list(self.allowed_agents)
        return [agent_id for agent_id in self.allowed_agents if agent_id in agent_ids]

    def public(self, *, seen_by: Collection[str] | None = None) -> dict[str, Any]:
        """The API shape: the seed's ToolDefinition plus version, limits and annotations.

        `seen_by` is the agents of the caller (None: an unbound caller, which sees everything);
        see allowed_agents_seen_by.
        """
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "executor": self.executor,
            "target": self.target,
            "allowed_agents": self.allowed_agents_seen_by(seen_by),
            "timeout": self.timeout,
            "enabled": self.enabled,
            "version": self.version,
            "annotations": self.annotations,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "agent_secret_headers": dict(self.agent_secret_headers),
        }


@dataclass(frozen=True)
class Registry:
    tools: dict[str, ToolDefinition]
    # OpenAI function names, computed over the whole registry so a name never changes with
    # the agent asking, and reversible through `tool_for_function`.
    function_names: dict[str, str]
    tool_for_function: dict[str, str]


def _simple_function_name(tool_id: str) -> str:
    # "." is the only id character OpenAI refuses; "__" reads well (projects__list).
    return tool_id.replace(".", "__")


def function_names_for(tool_ids: list[str]) -> dict[str, str]:
    """tool id -> OpenAI function name, unique and valid ([A-Za-z0-9_-]{1,64}).

    A name that would collide with another tool's or be too long gets a hash of the id, so
    `projects.list` and `projects__list` both exist without either capturing the other.
    """
    simple = {tool_id: _simple_function_name(tool_id) for tool_id in tool_ids}
    counts: dict[str, int] = {}
    for name in simple.values():
        counts[name] = counts.get(name, 0) + 1
    names: dict[str, str] = {}
    for tool_id, name in simple.items():
        if counts[name] > 1 or not _FUNCTION_NAME_RE.match(name):
            digest = hashlib.sha256(tool_id.encode()).hexdigest()[:10]
            name = f"{name[:53]}_{digest}"
        names[tool_id] = name
    return names


def _decode_secrets(raw: str, tool_id: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        logger.error("secret headers of tool %s are not JSON; ignored", tool_id)
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def definition_of(row: Any) -> ToolDefinition:
    """A ToolDefinition from a Tool row (schemas compiled once, here).

    Raises on a schema that is not valid 2020-12 (only a write past the services could store
    one): the loader then leaves the tool out rather than fail every call to it.
    """
    Draft202012Validator.check_schema(row.input_schema)
    if row.output_schema is not None:
        Draft202012Validator.check_schema(row.output_schema)
    return ToolDefinition(
        id=row.tool_id,
        name=row.name,
        description=row.description,
        input_schema=row.input_schema,
        output_schema=row.output_schema,
        executor=row.executor,
        target=row.target,
        allowed_agents=None if row.allowed_agents is None else tuple(row.allowed_agents),
        timeout=row.timeout,
        # A tool of a disabled MCP server is disabled with it (listed nowhere, refused as disabled).
        enabled=row.enabled and (row.mcp_server_id is None or row.mcp_server.enabled),
        version=row.version,
        read_only=row.read_only,
        destructive=row.destructive,
        idempotent=row.idempotent,
        rate_limit_per_minute=row.rate_limit_per_minute,
        secret_headers=_decode_secrets(row.secret_headers, row.tool_id),
        agent_secret_headers=dict(row.agent_secret_headers or {}),
        input_validator=compile_validator(row.input_schema),
        output_validator=compile_validator(row.output_schema),
        secret_arg_paths=tuple(secret_paths(row.input_schema)),
        mcp_server=_server_definition(row.mcp_server) if row.mcp_server_id else None,
    )


def _server_definition(server: Any) -> McpServerDefinition:
    return McpServerDefinition(
        name=server.name,
        url=server.url,
        timeout=server.timeout,
        enabled=server.enabled,
        protocol_version=server.protocol_version,
        secret_headers=_decode_secrets(server.secret_headers, f"mcp server {server.name}"),
    )


def _load() -> Registry:
    from apps.tools.models import Tool

    tools = {}
    for row in Tool.objects.select_related("mcp_server"):
        try:
            tools[row.tool_id] = definition_of(row)
        except Exception:  # noqa: BLE001 - one broken row must not take every tool down
            logger.exception("tool %s could not be loaded; it is left out of the registry", row.tool_id)
    names = function_names_for(sorted(tools))
    return Registry(tools=tools, function_names=names, tool_for_function={v: k for k, v in names.items()})


registry_snapshot: LiveSnapshot[Registry] = LiveSnapshot(TOOLS_CONFIG, _load)
