"""Ninja router of toolcore: /internal/tools (scope `tools`). Thin: parse, call, shape."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from apps.tools.schemas import (
    MCPToolListOut,
    OpenAIToolListOut,
    ToolCallIn,
    ToolCallOut,
    ToolDefinitionOut,
    ToolListOut,
    ToolListParams,
)
from apps.tools.selectors import amcp_tools_for_agents, aopenai_tools_for_agents, atool_get, atools_for_agents
from apps.tools.services import ToolCallOutcome, tool_call, tool_call_refused
from daarion.infra.agent_secrets import agent_secrets_for
from apps.access.auth import Principal, ServiceTokenAuth, principal_of
from daarion.infra.errors import DaarionError, Forbidden, NotFound, RateLimited, ValidationFailed

router = Router(tags=["tools"], auth=ServiceTokenAuth("tools"))


def _listed_for(principal: Principal, agent_id: str | None) -> Collection[str] | None:
    """Whose tools a listing shows: the agent asked for (if the token may act for it), else
    the token's agents (their union), else every agent's (an unbound token)."""
    if agent_id is not None:
        principal.ensure_can_act_for(agent_id)
        return (agent_id,)
    return principal.agents


@router.get("", response={200: ToolListOut | OpenAIToolListOut | MCPToolListOut})
async def tools_list(request: HttpRequest, params: Query[ToolListParams]) -> dict[str, Any]:
    """Enabled tools (those `agent_id`, or else the token's agents, may call); `format=openai|mcp` reshapes."""
    principal = principal_of(request)
    agent_ids = _listed_for(principal, params.agent_id)
    if params.format == "openai":
        tools, mapping = await aopenai_tools_for_agents(agent_ids)
        return {"tools": tools, "function_map": mapping}
    if params.format == "mcp":
        return await amcp_tools_for_agents(agent_ids)
    # allowed_agents narrowed to the token's agents (not just `agent_id`'s): what the token may
    # know, whichever of its agents it lists for.
    return {"tools": [t.public(seen_by=principal.agents) for t in await atools_for_agents(agent_ids)]}


def _raise_refusal(outcome: ToolCallOutcome) -> None:
    """Refusals answer with their HTTP status (the audit row is already written)."""
    details = {"request_id": outcome.request_id}
    error: DaarionError | None = None
    if outcome.error_type in ("tool_not_found", "tool_disabled"):
        error = NotFound(outcome.error or "", type=outcome.error_type, details=details)
    elif outcome.error_type == "tool_not_allowed":
        error = Forbidden(outcome.error or "", type=outcome.error_type, details=details)
    elif outcome.status == "invalid_args":
        error = ValidationFailed(outcome.error or "", type="invalid_args", details=outcome.details)
    elif outcome.status == "rate_limited":
        retry = str((outcome.details or {}).get("retry_after_s", 60))
        error = RateLimited(outcome.error or "", details=outcome.details, headers={"Retry-After": retry})
    if error is not None:
        error.headers.setdefault("x-request-id", outcome.request_id)
        raise error


@router.post("/call", response={200: ToolCallOut})
async def tools_call(request: HttpRequest, payload: ToolCallIn) -> dict[str, Any]:
    """Checks and runs one call: 403/404/422/429 for refusals, 200 with ok=false for failures."""
    request_id = getattr(request, "request_id", None)
    principal = principal_of(request)
    if payload.agent_id and not principal.may_act_for(payload.agent_id):
        await tool_call_refused(
            tool_id=payload.tool_id,
            agent_id=payload.agent_id,
            microdao_id=payload.microdao_id,
            error_type="agent_not_allowed",
            error=f"token {principal.name!r} may not act for {payload.agent_id!r}",
            request_id=request_id,
        )
    agent_id = principal.acting_agent(payload.agent_id, source="body.agent_id", required=True)
    outcome = await tool_call(
        tool_id=payload.tool_id,
        agent_id=agent_id,
        microdao_id=payload.microdao_id,
        args=payload.args,
        context=payload.context,
        request_id=request_id,
        # Looked up only for a tool that declares agent_secret_headers.
        agent_secrets=agent_secrets_for,
        caller_agents=principal.agents,
    )
    _raise_refusal(outcome)
    return {
        "ok": outcome.ok,
        "result": outcome.result,
        "error": outcome.error,
        "error_type": outcome.error_type,
        "details": outcome.details,
        "latency_ms": outcome.latency_ms,
        "request_id": outcome.request_id,
    }


# After /call, so the path `call` is never taken for a tool id.
@router.get("/{tool_id}", response={200: ToolDefinitionOut})
async def tools_get(request: HttpRequest, tool_id: str) -> dict[str, Any]:
    """One definition (disabled ones too); 404 as well for a tool the token's agents may not call."""
    agents = principal_of(request).agents
    tool = await atool_get(tool_id, agent_ids=agents)
    if tool is None:
        raise NotFound(f"no tool {tool_id!r}", type="tool_not_found")
    return tool.public(seen_by=agents)
