"""The MCP server of toolcore, on the official SDK's low-level `Server`.

Handlers only: who is calling was settled by the gateway (apps/tools/mcp/gateway.py) before
the SDK saw the request, and rides on the ASGI scope as a `Caller`. Every tool call goes
through `apps.tools.services.tool_call`, the same pipeline as the REST door (permission,
validation, per-tool limit, executor egress rules, audit). Extra tools and prompts that other
apps provide (agent memory, agent characters) come through `daarion.infra.mcp_extensions`, so this
module imports no other app.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from django.conf import settings
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError

from apps.tools.audit import audit_enqueue, audit_entry
from apps.tools.choices import CallStatus
from apps.tools.selectors import atools_for_agents, mcp_tool
from apps.tools.services import ToolCallOutcome, tool_call
from daarion.infra import mcp_extensions
from daarion.infra.agent_secrets import agent_secrets_for
from apps.access.auth import Principal
from daarion.infra.errors import DaarionError
from daarion.infra.outages import outage_error

logger = logging.getLogger(__name__)

SCOPE_KEY = "daarion.mcp_caller"
SERVER_NAME = "daarion-toolcore"
SERVER_VERSION = "2.0.0"


@dataclass(frozen=True)
class Caller:
    """Who sends this MCP request: the token, the agent it acts for, the microDAO, the request id."""

    principal: Principal
    agent_id: str
    microdao_id: str
    request_id: str

    @property
    def caller_agents(self) -> Collection[str] | None:
        return self.principal.agents


def caller_of(ctx: Any) -> Caller:
    request = getattr(ctx, "request", None)
    caller = request.scope.get(SCOPE_KEY) if request is not None else None
    if not isinstance(caller, Caller):
        # Only a mount without the gateway in front could get here: refuse, never serve anonymously.
        raise MCPError(types.INVALID_REQUEST, "no authenticated caller on this request")
    return caller


# --- pagination --------------------------------------------------------------------------
# The cursor is the name of the last item of the page before, opaque to the client. A name
# (not an offset) keeps a page stable when a tool is added or removed between two pages.


def _encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MCPError(types.INVALID_PARAMS, f"invalid cursor {cursor[:100]!r}: pass a nextCursor this server returned") from None


def _page(items: list[dict[str, Any]], cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of `items` (sorted by name) after `cursor`, and the cursor of the next page."""
    after = _decode_cursor(cursor)
    if after is not None:
        items = [item for item in items if item["name"] > after]
    size = max(1, settings.TOOLS_MCP_PAGE_SIZE)
    page = items[:size]
    return page, (_encode_cursor(page[-1]["name"]) if len(items) > size else None)


# --- tools -------------------------------------------------------------------------------


async def _extension_tools(caller: Caller) -> list[mcp_extensions.McpTool]:
    return [tool for tool in mcp_extensions.tools() if caller.principal.has_scope(tool.scope)]


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    caller = caller_of(ctx)
    extensions = [tool.spec() for tool in await _extension_tools(caller)]
    # An extension tool's name wins on /mcp (call_tool asks them first): a registry tool of the
    # same id is not offered here, so the list never names one tool twice.
    taken = {spec["name"] for spec in extensions}
    specs = [mcp_tool(tool) for tool in await atools_for_agents((caller.agent_id,)) if tool.id not in taken]
    specs += extensions
    specs.sort(key=lambda spec: spec["name"])
    page, next_cursor = _page(specs, params.cursor if params else None)
    # Typed results: the 2026-07-28 wire wants resultType, ttlMs and cacheScope, which the
    # models default (ttl 0, private: a listing depends on the token).
    return types.ListToolsResult.model_validate({"tools": page, "nextCursor": next_cursor})


def tool_result(outcome: ToolCallOutcome) -> dict[str, Any]:
    """A tool call's outcome as an MCP CallToolResult.

    A failed call is a result with isError (not a JSON-RPC error), so the model sees why and
    can correct itself: "invalid_args: args do not match ...".
    """
    if outcome.ok:
        result: dict[str, Any] = {
            "content": [{"type": "text", "text": json.dumps(outcome.result, ensure_ascii=False)}],
            "isError": False,
        }
        if isinstance(outcome.result, dict):
            result["structuredContent"] = outcome.result
        return result
    text = f"{outcome.error_type}: {outcome.error}"
    if outcome.details:
        text += "\n" + json.dumps(outcome.details, ensure_ascii=False)
    return {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {"daarion/error_type": outcome.error_type, "daarion/request_id": outcome.request_id},
    }


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = caller_of(ctx)
    arguments = params.arguments if params.arguments is not None else {}
    extension = next((t for t in await _extension_tools(caller) if t.name == params.name), None)
    if extension is not None:
        return types.CallToolResult.model_validate(await _call_extension(extension, caller, arguments))
    outcome = await tool_call(
        tool_id=params.name,
        agent_id=caller.agent_id,
        microdao_id=caller.microdao_id,
        args=arguments,
        request_id=caller.request_id,
        # Secrets are looked up only for a tool that declares agent_secret_headers; a tool
        # none of the token's agents may call comes back as tool_not_found.
        agent_secrets=agent_secrets_for,
        caller_agents=caller.caller_agents,
    )
    if outcome.error_type in ("tool_not_found", "tool_disabled"):
        # The protocol's answer to a name the server does not offer: a JSON-RPC error.
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}", {"error_type": outcome.error_type})
    return types.CallToolResult.model_validate(tool_result(outcome))


def _error_result(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": f"{error_type}: {message}"}],
        "isError": True,
        "_meta": {"daarion/error_type": error_type, "daarion/request_id": request_id},
    }


async def _call_extension(tool: mcp_extensions.McpTool, caller: Caller, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool another app serves (agent memory): checked against its schema, run for the
    acting agent only, and audited like a toolcore call (its arguments are not stored: they
    may hold what the agent remembers)."""
    started = time.perf_counter()
    status, error_type, error = CallStatus.OK, "", ""
    problems = tool.argument_problems(arguments)
    if problems:
        status, error_type, error = CallStatus.INVALID_ARGS, "invalid_args", problems[0]
        answer = _error_result(error_type, error, caller.request_id)
    else:
        try:
            result = await tool.handler(agent_id=caller.agent_id, microdao_id=caller.microdao_id, arguments=arguments)
        except mcp_extensions.McpToolError as exc:
            status, error_type, error = CallStatus.ERROR, exc.error_type, str(exc)
        except DaarionError as exc:  # a refusal of the owning app's services (bad input, not found)
            status = CallStatus.INVALID_ARGS if exc.status in (400, 422) else CallStatus.ERROR
            error_type, error = exc.type, exc.message
        except Exception as exc:  # noqa: BLE001 - a failed call with a reason, never a crashed request
            outage = outage_error(exc)
            if outage is not None:  # Postgres or Redis down: the model is told so, by name
                logger.warning("MCP tool %s: %s", tool.name, outage.type, exc_info=True)
                status, error_type, error = CallStatus.ERROR, outage.type, outage.message
            else:
                logger.exception("MCP tool %s failed for %s", tool.name, caller.agent_id)
                status, error_type, error = (
                    CallStatus.ERROR,
                    "execution_error",
                    f"{tool.name} failed; request id {caller.request_id}",
                )
        if error_type:
            answer = _error_result(error_type, error, caller.request_id)
        else:
            answer = {
                "content": [{"type": "text", "text": json.dumps(result, ensure_ascii=False, default=str)}],
                "isError": False,
                "structuredContent": result,
            }
    await audit_enqueue(
        audit_entry(
            tool_id=tool.name,
            tool_version=None,
            agent_id=caller.agent_id,
            microdao_id=caller.microdao_id,
            args=None,
            status=status,
            error_type=error_type or None,
            error=error or None,
            latency_ms=(time.perf_counter() - started) * 1000,
            request_id=caller.request_id,
        )
    )
    return answer


# --- prompts -----------------------------------------------------------------------------


async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
    caller = caller_of(ctx)
    prompts = await mcp_extensions.prompts_for(caller.caller_agents)
    page, next_cursor = _page(sorted(prompts, key=lambda p: p["name"]), params.cursor if params else None)
    return types.ListPromptsResult.model_validate({"prompts": page, "nextCursor": next_cursor})


async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    caller = caller_of(ctx)
    prompt = await mcp_extensions.prompt_get(caller.caller_agents, params.name, dict(params.arguments or {}))
    if prompt is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
    return types.GetPromptResult.model_validate(prompt)


def _no_header_schema(name: str) -> None:
    # The 2026-07-28 wire validates Mcp-Param-* headers against a tool's input schema; none of
    # our schemas binds a header, and without this the SDK would run tools/list for every call.
    return None


def build_server(listen: ListenHandler | None = None) -> Server:
    """`listen` serves `subscriptions/listen` (list-changed events, 2026-07-28); without it the
    server announces no listChanged on any revision."""
    return Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="DAARION Toolcore",
        instructions="DAARION tools, memory and agent prompts for the agent this token acts for.",
        get_tool_input_schema=_no_header_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_subscriptions_listen=listen,
    )
