"""The agent's memory as MCP tools on toolcore's /mcp (memory.search, memory.store,
memory.forget), registered in daarion.infra.mcp_extensions by MemoryConfig.ready(): toolcore may not
import this app. Each tool works on the acting agent's memories only and needs the `memory`
scope besides `tools`."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from apps.memory.choices import MemoryKind
from daarion.infra.errors import BadRequest
from daarion.infra.mcp_extensions import McpTool, register_tool

SCOPE = "memory"
_KINDS = {"type": "array", "items": {"enum": list(MemoryKind.values)}}


# The services are imported where they are used: this module is imported by ready(), and a
# change of the memory API must break these tools (and their tests), not the start-up.


async def search(*, agent_id: str, microdao_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from apps.memory.search import amemory_query

    hits = await amemory_query(
        agent_id=agent_id,
        query=arguments["query"],
        limit=arguments.get("limit", 5),
        microdao_id=arguments.get("microdao_id"),
        channel_id=arguments.get("channel_id"),
        kinds=arguments.get("kinds"),
    )
    return {
        "results": [
            {
                "id": h.id,
                "kind": h.kind,
                "score": round(h.score, 4),
                "text": h.content,
                "channel_id": h.channel_id,
                "occurred_at": h.occurred_at.isoformat() if h.occurred_at else None,
            }
            for h in hits
        ]
    }


async def store(*, agent_id: str, microdao_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from apps.memory.services import amemory_store

    microdao = arguments.get("microdao_id") or microdao_id
    if not microdao:
        raise BadRequest("microdao_id is required (an argument, or the X-Microdao-Id header)", type="invalid_args")
    entry, created = await amemory_store(
        agent_id=agent_id,
        microdao_id=microdao,
        channel_id=arguments.get("channel_id"),
        kind=arguments.get("kind", MemoryKind.KB.value),
        content={"text": arguments["text"]},
        meta=arguments.get("meta"),
        idempotency_key=arguments.get("idempotency_key"),
    )
    return {"id": entry.id, "created": created}


def _forget(agent_id: str, arguments: dict[str, Any]) -> int:
    from apps.memory.models import MemoryEntry
    from apps.memory.services import memory_forget

    if arguments.get("id"):
        deleted, _ = MemoryEntry.objects.filter(agent_id=agent_id, id=arguments["id"]).delete()
        return deleted
    return memory_forget(agent_id=agent_id, channel_id=arguments["channel_id"], kinds=arguments.get("kinds"))


async def forget(*, agent_id: str, microdao_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from apps.memory.services import closing_connection

    return {"deleted": await sync_to_async(closing_connection(_forget), thread_sensitive=False)(agent_id, arguments)}


def register() -> None:
    register_tool(
        McpTool(
            name="memory.search",
            scope=SCOPE,
            handler=search,
            read_only=True,
            idempotent=True,
            description="Search this agent's memory (hybrid lexical and semantic), best first.",
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["query"],
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                    "microdao_id": {"type": "string"},
                    "channel_id": {"type": "string"},
                    "kinds": _KINDS,
                },
            },
        )
    )
    register_tool(
        McpTool(
            name="memory.store",
            scope=SCOPE,
            handler=store,
            description="Remember a piece of text for this agent (embedded in the background).",
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["text"],
                "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": 20000},
                    "kind": {"enum": list(MemoryKind.values)},
                    "microdao_id": {"type": "string"},
                    "channel_id": {"type": "string"},
                    "meta": {"type": "object"},
                    "idempotency_key": {"type": "string", "maxLength": 200},
                },
            },
        )
    )
    register_tool(
        McpTool(
            name="memory.forget",
            scope=SCOPE,
            handler=forget,
            destructive=True,
            idempotent=True,
            description="Delete one of this agent's memories by id, or all of one channel's (optionally of some kinds).",
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "channel_id": {"type": "string", "minLength": 1},
                    "kinds": _KINDS,
                },
                "oneOf": [{"required": ["id"]}, {"required": ["channel_id"]}],
            },
        )
    )
