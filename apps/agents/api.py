"""Ninja router of the agents: /internal/agents (runtime state, blueprints, secrets, chat)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router

from apps.agents import runtime
from apps.agents.pipeline import TurnInput, turn_collect, turn_prepare
from apps.agents.schemas import AgentListOut, AgentStateOut, BlueprintOut, ChatIn, ChatOut, SecretsOut
from apps.agents.stream import HEADERS, ui_message_stream
from apps.agents.selectors import Blueprint, ablueprint_get, ablueprints_all
from daarion.auth import ServiceTokenAuth, ensure_scope, principal_of
from daarion.choices import Scope

router = Router(tags=["agents"], auth=ServiceTokenAuth(Scope.AGENTS.value))


def _state(blueprint: Blueprint, state: runtime.RuntimeState) -> dict[str, Any]:
    return {
        "id": blueprint.id,
        "name": blueprint.name,
        "microdao_id": blueprint.microdao_id,
        "enabled": blueprint.enabled,
        "model": blueprint.model,
        "version": blueprint.version,
        "loaded": state.loaded and blueprint.enabled,
        "loaded_since": state.since,
    }


def _blueprint(blueprint: Blueprint, state: runtime.RuntimeState) -> dict[str, Any]:
    return {
        **_state(blueprint, state),
        "system_prompt": blueprint.system_prompt,
        "character": blueprint.character,
        "memory": {"recall_limit": blueprint.memory_recall_limit, "kinds": list(blueprint.memory_kinds)},
        "max_tool_steps": blueprint.max_tool_steps,
        "tool_mode": blueprint.tool_mode,
        "temperature": blueprint.temperature,
        "secret_names": blueprint.secret_names,
    }


@router.get("", response=AgentListOut)
async def agents_list(request: HttpRequest) -> dict[str, Any]:
    """Every agent with its loaded state and the blueprint version this process holds.

    A token bound to agents sees only those: another agent's name, model and state are not
    its business.
    """
    principal = principal_of(request)
    states = await runtime.runtime_states()
    blueprints = await ablueprints_all()
    return {
        "items": [
            _state(bp, states.get(bp.id, runtime.RuntimeState(False, None)))
            for bp in sorted(blueprints.values(), key=lambda b: b.id)
            if principal.may_act_for(bp.id)
        ]
    }


@router.get("/{agent_id}", response=BlueprintOut)
async def agent_detail(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    """The agent's blueprint (character, prompt, settings) with secret names but no values."""
    # Checked before the lookup, so a bound token cannot probe which other agents exist.
    principal_of(request).ensure_can_act_for(agent_id)
    blueprint = await ablueprint_get(agent_id)
    return _blueprint(blueprint, await runtime.runtime_state(agent_id))


@router.post("/{agent_id}/load", response=AgentStateOut)
async def agent_load(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    """200 loaded; 404 unknown agent; 409 already loaded (or disabled)."""
    principal_of(request).ensure_can_act_for(agent_id)
    blueprint = await runtime.agent_load(agent_id=agent_id)
    return _state(blueprint, await runtime.runtime_state(agent_id))


@router.post("/{agent_id}/unload", response=AgentStateOut)
async def agent_unload(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    """200 unloaded; 404 unknown agent; 409 not loaded."""
    principal_of(request).ensure_can_act_for(agent_id)
    blueprint = await runtime.agent_unload(agent_id=agent_id)
    return _state(blueprint, await runtime.runtime_state(agent_id))


@router.get("/{agent_id}/secrets", response=SecretsOut)
async def agent_secrets(request: HttpRequest, agent_id: str) -> dict[str, Any]:
    """The agent's decrypted secrets: only for a token with the `agents:secrets` scope."""
    principal = principal_of(request)
    ensure_scope(principal, Scope.AGENTS_SECRETS.value)
    principal.ensure_can_act_for(agent_id)
    blueprint = await ablueprint_get(agent_id)
    return {"agent_id": blueprint.id, "version": blueprint.version, "secrets": dict(blueprint.secrets)}


@router.post("/{agent_id}/chat", response=ChatOut)
async def agent_chat(request: HttpRequest, agent_id: str, payload: ChatIn):
    """One agent turn. `stream: true` answers the AI SDK UI message stream (SSE)."""
    principal_of(request).ensure_can_act_for(agent_id)
    turn = TurnInput(
        agent_id=agent_id,
        message=payload.message,
        microdao_id=payload.microdao_id,
        channel_id=payload.channel_id,
        session_id=payload.session_id,
        user_id=payload.user_id,
        context=[item.dict() for item in payload.context],
        request_id=getattr(request, "request_id", None),
    )
    prepared = await turn_prepare(turn)
    if payload.stream:
        stream = ui_message_stream(prepared, heartbeat_seconds=settings.AGENTS_STREAM_HEARTBEAT_SECONDS)
        return StreamingHttpResponse(stream, content_type="text/event-stream", headers=HEADERS)
    return await turn_collect(prepared)
