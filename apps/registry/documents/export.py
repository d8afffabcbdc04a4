"""Writing the registry out as a document: every section unless asked for some, secret values
never (their names as `{env: VAR}` references the import command resolves)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSecret
from apps.llm.selectors import registry_export as llm_registry_export
from apps.registry.documents.models import SECTIONS
from apps.tools import services as tool_services


def _env_name(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Z0-9]", "_", part.upper()) for part in parts)


def _agents_export() -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {}
    for agent_id, name in AgentSecret.objects.order_by("agent_id", "name").values_list("agent_id", "name"):
        names.setdefault(agent_id, []).append(name)
    out = []
    for agent in Agent.objects.order_by("id"):
        item: dict[str, Any] = {"id": agent.id, **{name: getattr(agent, name) for name in agent_services.EDITABLE_FIELDS}}
        if agent.id in names:
            # Names only: each says which variable the import command reads the value from.
            item["secrets"] = {n: {"env": _env_name("AGENT_SECRET", agent.id.split(":", 1)[-1], n)} for n in names[agent.id]}
        out.append(item)
    return out


def registry_export(sections: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """The registry as a document (secret values never; their names as env refs), every
    section unless `sections` names some."""
    data: dict[str, Any] = {}
    if {"providers", "models", "rate_limits"} & set(sections):
        data = llm_registry_export()
        data.setdefault("rate_limits", [])
    if "tools" in sections:
        data["tools"] = tool_services.tools_export()["tools"]
    if "agents" in sections:
        data["agents"] = _agents_export()
    if "mcp_servers" in sections:
        data["mcp_servers"] = tool_services.mcp_servers_export()
    return {name: data[name] for name in SECTIONS if name in sections}
