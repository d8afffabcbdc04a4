"""System check of toolcore: tools whose `allowed_agents` name agents that do not exist
(`manage.py check --database default`; see apps/access/checks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks

from apps.access.checks import dangling_agent_warnings, quoted


def check_tool_allowed_agents(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """tools.W001: a tool allowing agents that do not exist (null, every agent, is never one)."""
    from apps.tools.models import Tool

    return dangling_agent_warnings(
        model=Tool,
        databases=databases,
        references=lambda rows: (
            (tool, tool.allowed_agents)
            for tool in rows.only("pk", "tool_id", "allowed_agents")
            if isinstance(tool.allowed_agents, list)
        ),
        describe=lambda tool, missing: f"tool {tool.tool_id!r} allows agents that do not exist: {quoted(missing)}",
        hint=lambda tool: (
            f"Take those ids out of the allowed agents of {tool.tool_id!r} (admin: Toolcore > Tools; "
            f"PATCH /api/registry/tools/{tool.tool_id}/ with the corrected allowed_agents; or import_tools), "
            "or create those agents. Until then every save of the tool is refused on allowed_agents, and "
            "an agent created later under such an id may call it."
        ),
        check_id="tools.W001",
    )
