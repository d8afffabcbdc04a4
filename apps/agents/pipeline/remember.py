"""Remembering a turn: one `conversation` memory and one transcript append per turn (its
entries chained by uuid/parentUuid), and the transcript of a turn cut short."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from apps.agents.pipeline.events import PreparedTurn, ToolOutput
from apps.agents.pipeline.orm import in_db_thread
from apps.agents.pipeline.tool_calls import PendingCall, tool_message_content
from apps.memory.services import amemory_store, transcript_append
from daarion.infra.errors import NotFound

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _entry(kind: str, prepared: PreparedTurn, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "uuid": str(uuid.uuid4()),
        "parentUuid": None,  # linked in order when the turn is written
        "sessionId": prepared.session_id,
        "timestamp": _now(),
        "turnId": prepared.turn_id,
        "agentId": prepared.blueprint.id,
        "message": message,
    }


def user_entry(prepared: PreparedTurn) -> dict[str, Any]:
    return _entry("user", prepared, {"role": "user", "content": prepared.turn.message})


def assistant_entry(prepared: PreparedTurn, text: str, calls: list[PendingCall]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": c.id, "name": c.tool_id, "input": c.arguments} for c in calls]
    return _entry("assistant", prepared, {"role": "assistant", "content": content})


def tool_results_entry(prepared: PreparedTurn, outputs: list[ToolOutput]) -> dict[str, Any]:
    content = [
        {"type": "tool_result", "tool_use_id": o.call_id, "content": tool_message_content(o), "is_error": not o.ok}
        for o in outputs
    ]
    return _entry("user", prepared, {"role": "user", "content": content})


def _append_transcript(prepared: PreparedTurn, entries: list[dict[str, Any]]) -> None:
    from apps.memory.selectors import transcript_get

    try:
        existing = transcript_get(session_id=prepared.session_id).entries
    except NotFound:
        existing = []
    parent = next((e.get("uuid") for e in reversed(existing) if e.get("uuid")), None)
    for entry in entries:
        entry["parentUuid"] = parent
        parent = entry["uuid"]
    transcript_append(session_id=prepared.session_id, agent_id=prepared.blueprint.id, entries=entries)


async def remember(prepared: PreparedTurn, reply: str, tools: list[ToolOutput], transcript: list[dict[str, Any]]) -> str | None:
    """One `conversation` memory and one transcript append per turn (the idempotency key is
    the turn id). A failure here is logged, not raised: the user has the answer already."""
    blueprint, turn = prepared.blueprint, prepared.turn
    memory_id = None
    try:
        entry, _ = await amemory_store(
            agent_id=blueprint.id,
            microdao_id=prepared.microdao_id,
            channel_id=turn.channel_id,
            kind="conversation",
            content={
                "user_message": turn.message,
                "agent_reply": reply,
                "tool_calls": [{"tool_id": t.tool_id, "ok": t.ok} for t in tools],
            },
            meta={
                "source": f"channel:{turn.channel_id}" if turn.channel_id else "agent-chat",
                "session_id": prepared.session_id,
                "turn_id": prepared.turn_id,
                "user_id": turn.user_id,
                "agent_version": blueprint.version,
            },
            idempotency_key=prepared.turn_id,
        )
        memory_id = str(entry.id)
    except Exception:  # noqa: BLE001 - the user has the answer already; log, do not fail the turn
        logger.warning("could not store the turn's memory", extra={"agent_id": blueprint.id}, exc_info=True)
    try:
        await in_db_thread(_append_transcript)(prepared, transcript)
    except Exception:  # noqa: BLE001 - as above
        logger.warning("could not append the transcript", extra={"agent_id": blueprint.id}, exc_info=True)
    return memory_id


async def remember_partial(prepared: PreparedTurn) -> None:
    """A turn stopped before its end (a cancelled run): the steps done so far and the text of
    the step in progress go to the transcript, so the session's next turn sees them. No
    memory is written: a cut answer is not something the agent should recall as said."""
    entries = list(prepared.transcript)
    partial = "".join(prepared.step_text).strip()
    if partial:
        entries.append(assistant_entry(prepared, partial, []))
    if not entries:
        return
    await in_db_thread(_append_transcript)(prepared, entries)
