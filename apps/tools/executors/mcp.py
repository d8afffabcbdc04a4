"""The mcp executor: calls the tool on its upstream MCP server through the SDK client.

Egress, headers and timeouts as for http tools (apps/tools/mcp/upstream.py): the upstream URL
passes the SSRF guard before any connection; the server's secret headers and the calling
agent's declared secrets go to the upstream as headers, never into errors or the audit.
The result is the upstream's structuredContent when it sends one, else its text content
(parsed as JSON when it is JSON); an `isError` result is a failed call with the upstream's text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
from mcp.shared.exceptions import MCPError

from apps.tools.choices import CallStatus, Executor
from apps.tools.executors import ExecutionResult, ToolContext, executor
from apps.tools.executors.http import TargetRefused

_SHORT = 500
TRANSPORT_ERROR = "daarion/transport_error"  # apps.tools.mcp.upstream.TRANSPORT_ERROR_KEY


def _text_of(content: list[Any]) -> str:
    return "\n".join(getattr(block, "text", "") for block in content if getattr(block, "type", "") == "text")


def result_value(result: Any) -> Any:
    """The value of a successful CallToolResult, as a toolcore result."""
    if result.structured_content is not None:
        return result.structured_content
    text = _text_of(result.content)
    if len(result.content) == 1 and text:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]


def _unwrap(exc: BaseException) -> BaseException:
    # The SDK client runs its transport in a task group: a failure may arrive wrapped.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _failure(exc: BaseException, where: str, timeout: float) -> ExecutionResult | None:
    if isinstance(exc, TargetRefused):
        return ExecutionResult.failure(f"{where} refused by the SSRF guard: {exc}", "target_not_allowed")
    if isinstance(exc, (TimeoutError, httpx2.TimeoutException)):
        return ExecutionResult.failure(f"{where} did not answer within {timeout:g} s", "timeout", status=CallStatus.TIMEOUT)
    if isinstance(exc, httpx2.ConnectError):
        return ExecutionResult.failure(f"could not connect to {where}: {exc or 'connection failed'}", "connect_error")
    if isinstance(exc, MCPError) and isinstance(exc.data, dict) and TRANSPORT_ERROR in exc.data:
        # A failed exchange the upstream transport answered for (apps/tools/mcp/upstream.py).
        if exc.data[TRANSPORT_ERROR] == "timeout":
            return ExecutionResult.failure(f"{where}: {exc.message}"[:_SHORT], "timeout", status=CallStatus.TIMEOUT)
        return ExecutionResult.failure(exc.message[:_SHORT], "connect_error")
    if isinstance(exc, MCPError):
        return ExecutionResult.failure(
            f"{where} answered error {exc.code}: {exc.message}"[:_SHORT], "upstream_error", details={"code": exc.code}
        )
    if isinstance(exc, httpx2.HTTPError):
        return ExecutionResult.failure(
            f"HTTP exchange with {where} failed: {type(exc).__name__}: {exc or 'no detail'}"[:_SHORT], "connect_error"
        )
    return None


@executor(Executor.MCP)
async def run_mcp(tool: Any, args: dict, context: ToolContext) -> ExecutionResult:
    # Imported here: the upstream module imports this package's http executor.
    from apps.tools.mcp.upstream import upstream_call_tool

    server = tool.mcp_server
    if server is None:
        return ExecutionResult.failure(f"tool {tool.id!r} has no MCP server", "mcp_server_missing")
    if not server.enabled:
        return ExecutionResult.failure(f"MCP server {server.name!r} is disabled", "mcp_server_disabled")
    headers = {**server.secret_headers, **context.secret_headers, "X-Request-Id": context.request_id}
    timeout = min(tool.timeout, server.timeout)
    try:
        async with asyncio.timeout(timeout):
            result = await upstream_call_tool(
                url=server.url,
                headers=headers,
                timeout=timeout,
                protocol_version=server.protocol_version,
                name=tool.target,
                arguments=args,
            )
    except Exception as exc:  # noqa: BLE001 - each known failure is a result with a reason; others re-raise
        failure = _failure(_unwrap(exc), f"MCP server {server.name!r}", timeout)
        if failure is None:
            raise
        return failure
    if result.is_error:
        text = _text_of(result.content) or "(no text)"
        return ExecutionResult.failure(
            f"MCP server {server.name!r}: tool {tool.target!r} failed: {text}"[: _SHORT * 4], "upstream_tool_error"
        )
    return ExecutionResult.success(result_value(result))
