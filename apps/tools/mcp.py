"""The MCP server of toolcore at /mcp: Streamable HTTP transport, JSON responses, stateless.

JSON-RPC methods: initialize, ping, tools/list, tools/call (plus notifications, answered 202).
The agent is the service token's binding when the token is bound to exactly one agent;
otherwise the `X-Agent-Id` header names it and the token must be allowed to act for it.
`X-Microdao-Id` sets the microDAO passed to tools. No server-initiated stream (GET is 405).
A tool none of the token's agents may call is an unknown tool here, as on the REST API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.tools.selectors import amcp_tools_for_agent
from apps.tools.services import tool_call
from daarion.agent_secrets import agent_secrets_for
from daarion.auth import Principal, ServiceTokenAuth
from daarion.errors import BadRequest, DaarionError, Forbidden, render_error

logger = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "daarion-toolcore", "title": "DAARION Toolcore", "version": "1.0.0"}

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603

_auth = ServiceTokenAuth("tools")


def _refuse_constant(name: str) -> Any:
    # Python's reader takes NaN and Infinity; JSON has neither, and an id of NaN echoed back
    # would make the answer invalid JSON.
    raise ValueError(f"{name} is not JSON")


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _agent_of(request: HttpRequest, principal: Principal) -> str:
    header = request.headers.get("X-Agent-Id", "").strip()
    if principal.agents is not None and len(principal.agents) == 1:
        (bound,) = principal.agents
        if header and header != bound:
            raise Forbidden(f"token {principal.name!r} is bound to {bound!r}, not {header!r}", type="agent_not_allowed")
        return bound
    if not header:
        raise BadRequest(
            "this token is not bound to exactly one agent: name the agent in the X-Agent-Id header",
            type="agent_required",
        )
    principal.ensure_can_act_for(header)
    return header


def _error(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def _tool_result(outcome: Any) -> dict[str, Any]:
    if outcome.ok:
        result: dict[str, Any] = {
            "content": [{"type": "text", "text": json.dumps(outcome.result, ensure_ascii=False)}],
            "isError": False,
        }
        if isinstance(outcome.result, dict):
            result["structuredContent"] = outcome.result
        return result
    # A failed call is a tool result with isError, so the model sees why and can correct itself.
    text = f"{outcome.error_type}: {outcome.error}"
    if outcome.details:
        text += "\n" + json.dumps(outcome.details, ensure_ascii=False)
    return {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {"daarion/error_type": outcome.error_type, "daarion/request_id": outcome.request_id},
    }


async def _dispatch(
    message: Any, *, agent_id: str, caller_agents: Collection[str] | None, microdao_id: str, request_id: str
) -> dict[str, Any] | None:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        return _error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST,
                      "expected a JSON-RPC 2.0 request with a method")
    msg_id = message.get("id")
    method = message["method"]
    params = message.get("params") or {}
    if "id" not in message:
        return None  # a notification (notifications/initialized, cancelled, ...): nothing to answer
    try:
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object")
        result = await _method(method, params, agent_id=agent_id, caller_agents=caller_agents,
                               microdao_id=microdao_id, request_id=request_id)
    except RpcError as exc:
        return _error(msg_id, exc.code, exc.message, exc.data)
    except Exception:  # noqa: BLE001 - the client gets a JSON-RPC error, the log gets the trace
        logger.exception("MCP %s failed", method)
        return _error(msg_id, INTERNAL_ERROR, f"internal error; request id {request_id}")
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


async def _method(
    method: str, params: dict, *, agent_id: str, caller_agents: Collection[str] | None, microdao_id: str, request_id: str
) -> dict[str, Any]:
    if method == "initialize":
        asked = params.get("protocolVersion")
        return {
            "protocolVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": f"DAARION tools available to {agent_id}.",
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return await amcp_tools_for_agent(agent_id)
    if method == "tools/call":
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_PARAMS, "tools/call needs params.name")
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "params.arguments must be an object")
        outcome = await tool_call(
            tool_id=name, agent_id=agent_id, microdao_id=microdao_id, args=arguments, request_id=request_id,
            # Secrets are looked up only for a tool that declares agent_secret_headers; a tool
            # none of the token's agents may call comes back as tool_not_found.
            agent_secrets=agent_secrets_for, caller_agents=caller_agents,
        )
        if outcome.error_type in ("tool_not_found", "tool_disabled"):
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}", {"error_type": outcome.error_type})
        return _tool_result(outcome)
    raise RpcError(METHOD_NOT_FOUND, f"method {method!r} is not supported")


def _refuse_origin_or_version(request: HttpRequest) -> HttpResponse | None:
    """The transport's two header rules: a browser Origin must be ours or listed (no DNS
    rebinding from a web page), and a protocol version header must name a version we speak."""
    origin = request.headers.get("Origin")
    if origin:
        netloc = urlsplit(origin).netloc.lower()
        allowed = {o.lower() for o in settings.TOOLS_MCP_ALLOWED_ORIGINS}
        if netloc != request.get_host().lower() and origin.lower() not in allowed and netloc not in allowed:
            return render_error(Forbidden(f"origin {origin!r} may not use this MCP server", type="origin_not_allowed"))
    version = request.headers.get("MCP-Protocol-Version")
    if version and version not in SUPPORTED_VERSIONS:
        return render_error(
            BadRequest(f"unsupported MCP-Protocol-Version {version!r}", type="unsupported_protocol_version",
                       details={"supported": list(SUPPORTED_VERSIONS)})
        )
    return None


@csrf_exempt
async def mcp_endpoint(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = HttpResponse(status=405)
        response["Allow"] = "POST"
        return response
    refused = _refuse_origin_or_version(request)
    if refused is not None:
        return refused
    try:
        principal = await _auth(request)
        agent_id = _agent_of(request, principal)
    except DaarionError as exc:
        response = render_error(exc)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="daarion"'
        return response
    try:
        body = json.loads(request.body or b"", parse_constant=_refuse_constant)
    except RequestDataTooBig:
        return JsonResponse(_error(None, INVALID_REQUEST, "request body is over the size limit"), status=413)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return JsonResponse(_error(None, PARSE_ERROR, "body is not valid JSON"), status=400)
    request_id = getattr(request, "request_id", "")
    microdao_id = request.headers.get("X-Microdao-Id", "").strip()

    async def dispatch(message: Any) -> dict[str, Any] | None:
        return await _dispatch(message, agent_id=agent_id, caller_agents=principal.agents,
                               microdao_id=microdao_id, request_id=request_id)

    if isinstance(body, list):  # a batch (protocol 2025-03-26)
        if not body:
            return JsonResponse(_error(None, INVALID_REQUEST, "empty batch"), status=400)
        answers = [a for a in [await dispatch(m) for m in body] if a is not None]
        return JsonResponse(answers, safe=False) if answers else HttpResponse(status=202)
    answer = await dispatch(body)
    if answer is None:
        return HttpResponse(status=202)
    return JsonResponse(answer)
