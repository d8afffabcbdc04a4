"""Each agent's character as an MCP prompt on toolcore's /mcp (prompts/list, prompts/get), so
an IDE client can speak as the agent; registered in daarion.infra.mcp_extensions by
AgentsConfig.ready(): toolcore may not import this app. A caller sees the prompts of the
enabled agents its token may act for (all of them for an unbound token)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from apps.agents.selectors import ablueprints_all
from apps.agents.services import AGENTS_CONFIG
from daarion.infra.mcp_extensions import register_prompts


def _visible(blueprints: dict[str, Any], agent_ids: Collection[str] | None) -> list[Any]:
    return [b for agent_id, b in sorted(blueprints.items()) if b.enabled and (agent_ids is None or agent_id in agent_ids)]


async def list_prompts(agent_ids: Collection[str] | None) -> list[dict[str, Any]]:
    return [
        {"name": b.id, "title": b.name, "description": f"Speak as {b.name} ({b.id}) of {b.microdao_id}"}
        for b in _visible(await ablueprints_all(), agent_ids)
    ]


async def get_prompt(agent_ids: Collection[str] | None, name: str, arguments: dict[str, str]) -> dict[str, Any] | None:
    # Imported here: this module is imported by ready(), and a change of the pipeline must
    # break this prompt (and its test), not the start-up.
    from apps.agents.pipeline import character_prompt

    blueprint = next((b for b in _visible(await ablueprints_all(), agent_ids) if b.id == name), None)
    if blueprint is None:
        return None
    text = "\n\n".join(part for part in (blueprint.system_prompt.strip(), character_prompt(blueprint)) if part)
    return {
        "description": f"The character of {blueprint.name}",
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
    }


def register() -> None:
    register_prompts(list_prompts, get_prompt, config=AGENTS_CONFIG)
