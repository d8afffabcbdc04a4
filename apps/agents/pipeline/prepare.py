"""The checks that refuse a turn before it exists: unknown agent, not loaded or disabled, a
session of another agent."""

from __future__ import annotations

import uuid

from apps.agents.pipeline.events import PreparedTurn, TurnInput
from apps.agents.pipeline.orm import in_db_thread
from apps.agents.runtime import loaded_blueprint
from daarion.infra.errors import Conflict, Forbidden, NotFound


def session_owner(session_id: str) -> str | None:
    from apps.memory.selectors import transcript_get

    try:
        return transcript_get(session_id=session_id).agent_id
    except NotFound:
        return None


async def turn_prepare(turn: TurnInput, *, turn_id: str | None = None, check_session: bool = True) -> PreparedTurn:
    """Checks that may refuse the turn outright: 404 unknown agent, 409 not loaded, disabled,
    or (unless the caller checks it itself, as `run_start` does) a session that belongs to
    another agent."""
    blueprint = await loaded_blueprint(turn.agent_id)
    if turn.microdao_id and blueprint.microdao_id and turn.microdao_id != blueprint.microdao_id:
        # The turn's model calls are charged to its microDAO's limits and budget: an agent's
        # turn is always its own microDAO's, never one the caller names (docs/AGENTS_SPEC.md).
        raise Forbidden(
            f"agent {blueprint.id!r} belongs to {blueprint.microdao_id!r}, not {turn.microdao_id!r}",
            type="microdao_mismatch",
            details={"agent_id": blueprint.id, "microdao_id": turn.microdao_id, "agent_microdao_id": blueprint.microdao_id},
        )
    if turn.session_id and check_session:
        owner = await in_db_thread(session_owner)(turn.session_id)
        if owner is not None and owner != blueprint.id:
            raise Conflict(
                f"session {turn.session_id!r} belongs to another agent",
                type="session_agent_mismatch",
                details={"session_id": turn.session_id},
            )
    return PreparedTurn(
        turn=turn,
        blueprint=blueprint,
        turn_id=turn_id or f"turn-{uuid.uuid4().hex}",
        session_id=turn.session_id or f"sess-{uuid.uuid4().hex}",
        microdao_id=turn.microdao_id or blueprint.microdao_id,
    )
