"""Ninja router of the agents: /internal/agents (runtime state, blueprints, secrets, chat, runs)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Query, Router

from apps.agents import runtime
from apps.agents.choices import RunStatus
from apps.agents.models import Run
from apps.agents.pipeline import TurnInput, in_db_thread, turn_prepare
from apps.agents.runs.chunks import chunks_state
from apps.agents.runs.selectors import (
    arun_get,
    parse_last_event_id,
    run_out,
    run_sse,
    run_wait,
    runs_list,
    session_active_run,
)
from apps.agents.runs.services import arun_await_start, arun_cancel, run_start
from apps.agents.schemas import (
    AgentListOut,
    AgentStateOut,
    BlueprintOut,
    ChatIn,
    ChatOut,
    RunListOut,
    RunOut,
    SecretsOut,
)
from apps.agents.selectors import Blueprint, ablueprint_get, ablueprints_all
from apps.agents.stream import HEADERS
from apps.access.auth import ServiceTokenAuth, ensure_scope, principal_of
from apps.access.choices import Scope
from daarion.infra.errors import DaarionError, ValidationFailed

RUN_HEADER = "x-daarion-run-id"

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
            _state(bp, states.get(bp.id, runtime.RuntimeState(True, None)))
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


# --- runs ----------------------------------------------------------------------------------
# The run routes by id come before the /{agent_id}/... ones only for readability: their paths
# differ in shape, so neither shadows the other.


async def _run_for(request: HttpRequest, run_id: str) -> Run:
    """The run, if the token may act for its agent: 404 unknown, 403 another agent's."""
    run = await arun_get(run_id=run_id)
    principal_of(request).ensure_can_act_for(run.agent_id)
    return run


def _sse_response(body: Any, run_id: str) -> StreamingHttpResponse:
    return StreamingHttpResponse(body, content_type="text/event-stream", headers={**HEADERS, RUN_HEADER: run_id})


async def _stream_reachable(run_id: str) -> None:
    """One read of the run's stream before the answer starts: with Redis down the caller gets
    503 redis_unavailable, not a 200 whose body breaks off."""
    await chunks_state(run_id)


@router.get("/runs/{run_id}", response=RunOut)
async def run_detail(request: HttpRequest, run_id: str) -> dict[str, Any]:
    """The run: status, final message (UIMessage parts), usage, timings, error."""
    return run_out(await _run_for(request, run_id))


@router.get("/runs/{run_id}/stream")
async def run_stream(request: HttpRequest, run_id: str, after: str | None = None) -> StreamingHttpResponse:
    """The run's UI message stream from the start, or after `Last-Event-ID` (or `?after=`);
    a finished run replays. Each event's `id:` is its stream entry id."""
    after_id = parse_last_event_id(request.headers.get("Last-Event-ID") or after)
    run = await _run_for(request, run_id)
    await _stream_reachable(run.pk)
    return _sse_response(run_sse(run.pk, after=after_id), run.pk)


@router.post("/runs/{run_id}/cancel", response=RunOut)
async def run_cancel(request: HttpRequest, run_id: str) -> dict[str, Any]:
    """Stops the run at its next chunk boundary; the partial answer is kept. 409 once ended."""
    run = await _run_for(request, run_id)
    return run_out(await arun_cancel(run=run))


async def _start(request: HttpRequest, agent_id: str, payload: ChatIn) -> tuple[Run, bool]:
    principal = principal_of(request)
    principal.ensure_can_act_for(agent_id)
    problems = payload.problems()
    if problems:
        raise ValidationFailed("; ".join(f"{p['path']}: {p['message']}" for p in problems), details=problems)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ValidationFailed(
            "Idempotency-Key must be 1-200 characters", details=[{"path": "Idempotency-Key", "message": "1-200 characters"}]
        )
    turn = TurnInput(
        agent_id=agent_id,
        message=payload.message or "",
        microdao_id=payload.microdao_id,
        channel_id=payload.channel_id,
        session_id=payload.session_id,
        user_id=payload.user_id,
        context=[item.dict() for item in payload.context],
        request_id=getattr(request, "request_id", None),
    )
    # Refusals before a run exists: unknown agent, not loaded or disabled, another agent's session.
    prepared = await turn_prepare(turn, check_session=False)  # run_start checks it, under its lock
    return await in_db_thread(run_start)(
        agent_id=agent_id,
        session_id=prepared.session_id,
        strategy=payload.strategy,
        idempotency_key=key,
        request={
            "message": turn.message,
            "microdao_id": prepared.microdao_id,
            "channel_id": turn.channel_id,
            "user_id": turn.user_id,
            "context": turn.context,
        },
        request_id=turn.request_id or "",
        token_name=principal.name,
    )


def _answer(run: Run) -> dict[str, Any]:
    """The JSON answer of a finished run, or its error with the status it had."""
    if run.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED) and run.result is not None:
        return run.result
    error = run.error or {"type": "internal_error", "message": "the run ended without an answer", "status": 500}
    raise DaarionError(
        error.get("message", ""),
        type=error.get("type"),
        status=int(error.get("status") or 500),
        details=error.get("details"),
        headers={RUN_HEADER: run.pk},
    )


@router.post("/{agent_id}/chat", response=ChatOut)
async def agent_chat(request: HttpRequest, response: HttpResponse, agent_id: str, payload: ChatIn):
    """Starts a run of one turn and streams it (`stream: true`, an AI SDK body, or `Accept:
    text/event-stream`) or waits for its JSON answer. The run goes on if the client leaves."""
    run, _ = await _start(request, agent_id, payload)
    try:  # no answer can come without a worker: say so, instead of waiting for ever
        await arun_await_start(run=run, timeout=settings.AGENTS_RUN_START_TIMEOUT_SECONDS)
    except DaarionError as exc:
        exc.headers[RUN_HEADER] = run.pk
        raise
    streaming = payload.stream
    if streaming is None:
        streaming = payload.ai_sdk_body or "text/event-stream" in request.headers.get("Accept", "")
    if streaming:
        return _sse_response(run_sse(run.pk), run.pk)
    response[RUN_HEADER] = run.pk
    if not run.ended:
        run = await run_wait(run.pk)
    return _answer(run)


@router.get(
    "/{agent_id}/chat/{chat_id}/stream",
    openapi_extra={
        "responses": {
            "200": {"description": "The active run's UI message stream (text/event-stream)."},
            "204": {"description": "The chat has no active run."},
        }
    },
)
async def agent_chat_resume(request: HttpRequest, agent_id: str, chat_id: str):
    """The AI SDK's resume route: the chat's active run from its first chunk, or 204."""
    principal_of(request).ensure_can_act_for(agent_id)
    run = await in_db_thread(session_active_run)(agent_id=agent_id, session_id=chat_id)
    if run is None:
        return HttpResponse(status=204)
    await _stream_reachable(run.pk)
    return _sse_response(run_sse(run.pk), run.pk)


@router.post("/{agent_id}/runs", response={200: RunOut, 202: RunOut})
async def agent_run_start(request: HttpRequest, agent_id: str, payload: ChatIn):
    """Starts a background run: 202 with the run (200 with the existing one for a repeated
    Idempotency-Key). Follow it with GET /runs/{id}/stream."""
    run, created = await _start(request, agent_id, payload)
    return (202 if created else 200), run_out(run)


@router.get("/{agent_id}/runs", response=RunListOut)
async def agent_runs(
    request: HttpRequest,
    agent_id: str,
    session_id: str | None = None,
    status: RunStatus | None = None,
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = None,
) -> dict[str, Any]:
    """The agent's runs, newest first; `next_cursor` pages on."""
    principal_of(request).ensure_can_act_for(agent_id)
    runs, next_cursor = await in_db_thread(runs_list)(
        agent_id=agent_id, session_id=session_id, status=status, limit=limit, cursor=cursor
    )
    return {"items": [run_out(run) for run in runs], "next_cursor": next_cursor}
