"""Saving tools: create, update (through model_update, with the tool's version), delete, an
agent's removal from every tool's list, and the export of the `tools:` section."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.tools.models import McpServer, Tool
from apps.tools.registry import TOOLS_CONFIG
from apps.tools.services.validation import clean_changes, secret_headers_of, tool_validate
from daarion.infra.live_config import bump_version
from daarion.infra.model_update import model_update

# Fields a caller may set on a tool (secret headers are handled apart: write-only).
TOOL_FIELDS = (
    "name",
    "description",
    "input_schema",
    "output_schema",
    "executor",
    "target",
    "allowed_agents",
    "timeout",
    "enabled",
    "read_only",
    "destructive",
    "idempotent",
    "rate_limit_per_minute",
    "agent_secret_headers",
)
# What the services write on a saved tool: the caller's fields, the sealed secret headers, and
# the server a synced tool comes from (cleared when the server goes).
_WRITTEN = (*TOOL_FIELDS, "secret_headers", "mcp_server")


def _tool_changes(tool: Tool, data: Mapping[str, Any], secret_headers: Mapping[str, str | None] | None) -> dict[str, Any]:
    return clean_changes(tool, data, secret_headers, fields=TOOL_FIELDS, unknown="unknown tool field")


@transaction.atomic
def tool_create(*, tool_id: str, secret_headers: dict[str, str] | None = None, **fields: Any) -> Tool:
    tool = Tool(tool_id=tool_id)
    for name, value in _tool_changes(tool, fields, secret_headers).items():
        setattr(tool, name, value)
    tool_validate(tool)
    tool.save()
    bump_version(TOOLS_CONFIG)
    return tool


@transaction.atomic
def tool_update(*, tool: Tool, secret_headers: Mapping[str, str | None] | None = None, **fields: Any) -> Tool:
    """Changes fields; `secret_headers` merges (a None/empty value removes that header).

    The version goes up by one on every change; a save that changes nothing keeps it.
    """
    tool_save_changes(tool=tool, data=_tool_changes(tool, fields, secret_headers))
    return tool


def tool_save_changes(*, tool: Tool, data: Mapping[str, Any], check: bool = True) -> bool:
    """Writes `data` (cleaned values) on the saved `tool`, in the caller's transaction, through
    model_update: when a value differs, the tool's rules are checked (`check=False`: not, for a
    write that only narrows its agents or disables it), its version becomes the row's + 1 and
    `updated_at` now, and the changed columns are saved at once; the live registry follows.
    Returns whether anything changed."""
    if not model_update(
        instance=tool, fields=_WRITTEN, data=data, validate=tool_validate if check else _unchecked, stamp=_next_version
    ):
        return False
    bump_version(TOOLS_CONFIG)
    return True


@transaction.atomic
def tools_forget_agent(*, agent_id: str) -> list[Tool]:
    """Takes `agent_id` out of every tool's allowed_agents (the agent is being deleted), so
    no tool names an agent that is gone; returns the tools it changed.

    A list that becomes empty stays [] (no agent), never None (every agent). Only the list
    narrows, so the tool's other rules are not checked again here: a tool that a newer rule
    would refuse (say, a python target no longer registered) must not block deleting an agent.
    """
    changed = []
    for tool in Tool.objects.select_for_update().filter(allowed_agents__contains=[agent_id]).order_by("tool_id"):
        narrowed = [a for a in tool.allowed_agents or [] if a != agent_id]
        tool_save_changes(tool=tool, data={"allowed_agents": narrowed}, check=False)
        changed.append(tool)
    # Upstream MCP servers name agents too (the list their new tools start with).
    # The list only narrows, so, as for tools, the server's other rules are not checked again.
    for server in McpServer.objects.select_for_update().filter(allowed_agents__contains=[agent_id]).order_by("name"):
        narrowed = [a for a in server.allowed_agents or [] if a != agent_id]
        model_update(
            instance=server, fields=("allowed_agents",), data={"allowed_agents": narrowed}, validate=_unchecked, stamp=touch
        )
    return changed


def _unchecked(row: Tool | McpServer) -> None:
    """The check of a write that only narrows a row's agents, disables or detaches it."""


def _next_version(tool: Tool) -> None:
    # The row's version, not this object's, so two admins saving at once both count.
    tool.version = Tool.objects.select_for_update().values_list("version", flat=True).get(pk=tool.pk) + 1
    touch(tool)


def touch(row: Tool | McpServer) -> None:
    """What a real change of a tool or an MCP server also writes: its updated_at."""
    row.updated_at = timezone.now()


@transaction.atomic
def tool_delete(*, tool: Tool) -> None:
    tool.delete()
    bump_version(TOOLS_CONFIG)


def tools_export() -> dict[str, Any]:
    """The registry as a `{tools: [...]}` document (secrets as header names only), without the
    tools synced from MCP servers."""
    out = []
    # Tools of an MCP server are the server's sync's to write: they travel as the server.
    for tool in Tool.objects.filter(mcp_server__isnull=True).order_by("tool_id"):
        item: dict[str, Any] = {
            "id": tool.tool_id,
            "name": tool.name,
            "description": tool.description,
            "input_schema": tool.input_schema,
            "output_schema": tool.output_schema,
            "executor": tool.executor,
            "target": tool.target,
            "allowed_agents": tool.allowed_agents,
            "timeout": tool.timeout,
            "enabled": tool.enabled,
            "annotations": {"read_only": tool.read_only, "destructive": tool.destructive, "idempotent": tool.idempotent},
            "rate_limit_per_minute": tool.rate_limit_per_minute,
        }
        if tool.agent_secret_headers:
            item["agent_secret_headers"] = dict(tool.agent_secret_headers)
        secrets = secret_headers_of(tool)
        if secrets:
            env_base = "TOOL_SECRET_" + re.sub(r"[^A-Z0-9]", "_", tool.tool_id.upper())
            item["secrets"] = {h: {"env": f"{env_base}_{re.sub(r'[^A-Z0-9]', '_', h.upper())}"} for h in sorted(secrets)}
        out.append(item)
    return {"tools": out}
