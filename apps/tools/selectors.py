"""Reads of toolcore: which tools an agent may use (or a caller acting for some agents may
see: ToolDefinition.visible_to), in our, OpenAI and MCP shapes.

All from the in-process registry snapshot (no database read). The sync functions are for sync
callers; async code uses the `a`-prefixed twins so a reload never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from apps.tools.models import Tool, ToolCall
from apps.tools.registry import Registry, ToolDefinition, registry_snapshot


def _visible(registry: Registry, agent_ids: Collection[str] | None) -> list[ToolDefinition]:
    return [tool for tool_id, tool in sorted(registry.tools.items()) if tool.enabled and tool.visible_to(agent_ids)]


def tools_for_agent(agent_id: str) -> list[ToolDefinition]:
    """Enabled tools `agent_id` may call."""
    return _visible(registry_snapshot.get(), (agent_id,))


async def atools_for_agent(agent_id: str) -> list[ToolDefinition]:
    """Enabled tools `agent_id` may call."""
    return _visible(await registry_snapshot.aget(), (agent_id,))


async def atools_for_agents(agent_ids: Collection[str] | None) -> list[ToolDefinition]:
    """Enabled tools one of `agent_ids` may call (their union; every enabled tool for None)."""
    return _visible(await registry_snapshot.aget(), agent_ids)


async def atool_get(tool_id: str, *, agent_ids: Collection[str] | None = None) -> ToolDefinition | None:
    """The tool (disabled ones too), or None when there is none or `agent_ids` may not see it."""
    registry = await registry_snapshot.aget()
    tool = registry.tools.get(tool_id) or (await registry_snapshot.aget(recheck=True)).tools.get(tool_id)
    return tool if tool is not None and tool.visible_to(agent_ids) else None


def _openai(registry: Registry, tools: list[ToolDefinition]) -> tuple[list[dict], dict[str, str]]:
    specs: list[dict[str, Any]] = []
    mapping: dict[str, str] = {}
    for tool in tools:
        name = registry.function_names[tool.id]
        mapping[name] = tool.id
        specs.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": tool.description or tool.name,
                    "parameters": tool.input_schema,
                },
            }
        )
    return specs, mapping


def openai_tools_for_agent(agent_id: str) -> tuple[list[dict], dict[str, str]]:
    """The OpenAI `tools` array for `agent_id` and the function-name -> tool-id map."""
    registry = registry_snapshot.get()
    return _openai(registry, _visible(registry, (agent_id,)))


async def aopenai_tools_for_agent(agent_id: str) -> tuple[list[dict], dict[str, str]]:
    return await aopenai_tools_for_agents((agent_id,))


async def aopenai_tools_for_agents(agent_ids: Collection[str] | None) -> tuple[list[dict], dict[str, str]]:
    registry = await registry_snapshot.aget()
    return _openai(registry, _visible(registry, agent_ids))


def tool_id_for_function(function_name: str) -> str | None:
    """Maps an OpenAI function name back to its tool id (None: no such tool)."""
    return registry_snapshot.get().tool_for_function.get(function_name)


def mcp_tool(tool: ToolDefinition) -> dict[str, Any]:
    """One tool in the MCP `tools/list` shape (MCP names may contain dots: the id is the name)."""
    spec: dict[str, Any] = {
        "name": tool.id,
        "title": tool.name,
        "description": tool.description or tool.name,
        "inputSchema": tool.input_schema,
        "annotations": {
            "title": tool.name,
            "readOnlyHint": tool.read_only,
            "destructiveHint": tool.destructive,
            "idempotentHint": tool.idempotent,
            "openWorldHint": tool.executor == "http",
        },
    }
    # MCP's outputSchema must describe an object (structuredContent is an object).
    if isinstance(tool.output_schema, dict) and tool.output_schema.get("type") == "object":
        spec["outputSchema"] = tool.output_schema
    return spec


async def amcp_tools_for_agent(agent_id: str) -> dict[str, Any]:
    return await amcp_tools_for_agents((agent_id,))


async def amcp_tools_for_agents(agent_ids: Collection[str] | None) -> dict[str, Any]:
    return {"tools": [mcp_tool(t) for t in await atools_for_agents(agent_ids)]}


def tool_calls_recent(*, agent_id: str | None = None, limit: int = 50) -> list[ToolCall]:
    rows = ToolCall.objects.all()
    if agent_id:
        rows = rows.filter(agent_id=agent_id)
    return list(rows[:limit])


def tool_by_id(tool_id: str) -> Tool | None:
    return Tool.objects.filter(tool_id=tool_id).first()
