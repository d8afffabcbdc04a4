"""Calling a tool: the checks of one call (found, enabled, allowed, arguments, rate limit,
agent secrets), its execution with the call's secrets scrubbed from the answer, the output
check, and the audit row every call leaves, allowed or not (refusals included)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from apps.tools.audit import audit_enqueue, audit_entry
from apps.tools.choices import CallStatus
from apps.tools.contracts import redact, validation_errors
from apps.tools.executors import ExecutionResult, ToolContext, get_executor
from apps.tools.registry import ToolDefinition, registry_snapshot
from daarion.infra import redaction
from daarion.infra.redis_client import LuaScript, get_async_redis, key
from daarion.infra.sliding_window import SLIDING_LUA, Window
from daarion.observability import metrics, tracing

logger = logging.getLogger(__name__)

# A door that has no secrets at hand passes a lookup instead (daarion.infra.agent_secrets.agent_secrets_for):
# called with the agent id and the secret names the tool declares, and only for a tool that
# declares some, so every other call does no extra work.
AgentSecretsLookup = Callable[[str, tuple[str, ...]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True)
class ToolCallOutcome:
    """The answer to one call. Refusals are outcomes too (with error_type), never raised."""

    ok: bool
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    latency_ms: float = 0.0
    request_id: str = ""
    status: str = CallStatus.OK
    details: Any = None


# A tool's calls per minute and agent, as a sliding-window count (daarion/infra/sliding_window.py).
# Only calls let through are counted: an agent retrying against its limit does not push the
# window ahead of itself. KEYS: this minute's counter, the previous minute's. ARGV: the limit,
# ms left of this minute, window ms, a new counter's expiry ms. Returns 0 (counted) or the ms
# to wait.
_TOOL_LIMIT = LuaScript.load(__file__, "tool_limit.lua", prefix=SLIDING_LUA)
TOOL_LIMIT_WINDOW_MS = 60_000


async def _rate_limit_wait_ms(tool: ToolDefinition, agent_id: str) -> int:
    """One atomic Redis round trip: 0 when the call may go (and is counted), else ms to wait."""
    if not tool.rate_limit_per_minute:
        return 0
    window = Window.at(int(time.time() * 1000), TOOL_LIMIT_WINDOW_MS)
    counters = [
        key("tools", "rl", tool.id, agent_id, str(window.index)),
        key("tools", "rl", tool.id, agent_id, str(window.index - 1)),
    ]
    try:
        return int(
            await _TOOL_LIMIT(
                get_async_redis(), counters, [tool.rate_limit_per_minute, window.reset_ms, window.length_ms, window.expire_ms]
            )
        )
    except Exception:  # noqa: BLE001 - a limit protects the target; Redis down must not stop every tool
        logger.warning("tool rate limit check failed; allowing the call", exc_info=True)
        return 0


async def tool_call(
    *,
    tool_id: str,
    agent_id: str,
    microdao_id: str,
    args: dict,
    context: dict | None = None,
    request_id: str | None = None,
    agent_secrets: Mapping[str, str] | AgentSecretsLookup | None = None,
    caller_agents: Collection[str] | None = None,
) -> ToolCallOutcome:
    """Checks and runs one call; every call, allowed or not, leaves an audit row.

    `agent_secrets`: the calling agent's decrypted secrets (the agents pipeline passes its
    blueprint's), or a lookup for them (the REST and MCP doors). Only those the tool declares
    in `agent_secret_headers` leave this function, as headers to an http target.

    `caller_agents`: the agents the caller may act for (a bound token's; None: any agent). A
    tool none of them may call is refused and answered `tool_not_found`, as if it did not
    exist (ToolDefinition.visible_to); its audit row keeps the real reason.
    """
    started = time.perf_counter()
    request_id = request_id or f"tc-{uuid.uuid4().hex}"
    registry = await registry_snapshot.aget()
    tool = registry.tools.get(tool_id)
    if tool is None:
        # A miss re-checks at once: a tool created a moment ago must be callable.
        tool = (await registry_snapshot.aget(recheck=True)).tools.get(tool_id)
    hidden = tool is not None and not tool.visible_to(caller_agents)
    if hidden:
        assert tool is not None  # hidden implies a tool
        # Never run, whatever agent_id says: the caller may not even know the tool exists.
        outcome = (
            _refusal(CallStatus.NOT_FOUND, "tool_disabled", f"tool {tool_id!r} is disabled")
            if not tool.enabled
            else _refusal(CallStatus.DENIED, "tool_not_allowed", f"agent {agent_id!r} may not use tool {tool_id!r}")
        )
    else:
        with tracing.span(
            f"execute_tool {tool_id}",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool_id,
                "gen_ai.agent.id": agent_id,
                "http.request_id": request_id,
            },
        ) as span:
            outcome = await _run_checked(tool, tool_id, agent_id, microdao_id, args, context, request_id, agent_secrets)
            tracing.set_attributes(span, {"daarion.tool.status": outcome.status, "error.type": outcome.error_type})
            if not outcome.ok:
                tracing.mark_failed(span, outcome.error or outcome.status)
    latency_ms = (time.perf_counter() - started) * 1000
    # Unknown ids are one label: callers choose them, the registry bounds the rest.
    metrics.observe_tool_call(tool_id if tool is not None else "unknown", outcome.status, latency_ms / 1000)
    called = ToolCallOutcome(
        ok=outcome.ok,
        result=outcome.result,
        error=outcome.error,
        error_type=outcome.error_type,
        latency_ms=round(latency_ms, 3),
        request_id=request_id,
        status=outcome.status,
        details=outcome.details,
    )
    await audit_enqueue(
        audit_entry(
            tool_id=tool_id,
            tool_version=tool.version if tool else None,
            agent_id=agent_id,
            microdao_id=microdao_id,
            args=redact(args, list(tool.secret_arg_paths)) if tool else None,
            status=outcome.status,
            error_type=outcome.error_type,
            error=outcome.error,
            latency_ms=latency_ms,
            request_id=request_id,
        )
    )
    if hidden:
        return ToolCallOutcome(
            ok=False,
            error=f"no tool {tool_id!r}",
            error_type="tool_not_found",
            latency_ms=called.latency_ms,
            request_id=request_id,
            status=CallStatus.NOT_FOUND,
        )
    return called


def _refusal(status: str, error_type: str, error: str, details: Any = None) -> ExecutionResult:
    return ExecutionResult.failure(error, error_type, status=status, details=details)


async def _run_checked(
    tool: ToolDefinition | None,
    tool_id: str,
    agent_id: str,
    microdao_id: str,
    args: Any,
    context: dict | None,
    request_id: str,
    agent_secrets: Mapping[str, str] | AgentSecretsLookup | None = None,
) -> ExecutionResult:
    if tool is None:
        return _refusal(CallStatus.NOT_FOUND, "tool_not_found", f"no tool {tool_id!r}")
    if not tool.enabled:
        return _refusal(CallStatus.NOT_FOUND, "tool_disabled", f"tool {tool_id!r} is disabled")
    if not tool.allows(agent_id):
        return _refusal(CallStatus.DENIED, "tool_not_allowed", f"agent {agent_id!r} may not use tool {tool_id!r}")
    if not isinstance(args, dict):
        return _refusal(
            CallStatus.INVALID_ARGS,
            "invalid_args",
            "args must be a JSON object",
            [{"path": "$", "message": "args must be a JSON object"}],
        )
    wait_ms = await _rate_limit_wait_ms(tool, agent_id)
    if wait_ms:
        return _refusal(
            CallStatus.RATE_LIMITED,
            "rate_limited",
            f"agent {agent_id!r} is over {tool.rate_limit_per_minute} calls/min for tool {tool_id!r}",
            {"limit_per_minute": tool.rate_limit_per_minute, "retry_after_s": math.ceil(wait_ms / 1000)},
        )
    if tool.input_validator is not None:
        errors = validation_errors(tool.input_validator, args, list(tool.secret_arg_paths))
        if errors:
            return _refusal(
                CallStatus.INVALID_ARGS,
                "invalid_args",
                f"args do not match the input schema of {tool_id!r}: {errors[0]['path']}: {errors[0]['message']}",
                errors,
            )
    run = get_executor(tool.executor)
    if run is None:
        return _refusal(CallStatus.ERROR, "unknown_executor", f"no executor {tool.executor!r}")
    injected: dict[str, str] = {}
    missing: list[str] = []
    secrets: Mapping[str, str] = {}
    if tool.agent_secret_headers:
        if callable(agent_secrets):
            try:
                secrets = await agent_secrets(agent_id, tuple(dict.fromkeys(tool.agent_secret_headers.values())))
            except Exception:  # noqa: BLE001 - a failed read is a failed call with a reason, never a 500
                # The trace holds no value: the lookup reads rows and decrypts, and neither
                # puts a plaintext in its messages.
                logger.exception("could not read the agent secrets of %s for tool %s", agent_id, tool_id)
                return _refusal(
                    CallStatus.ERROR,
                    "secrets_unavailable",
                    f"the secrets of agent {agent_id!r} could not be read; request id {request_id}",
                )
        elif agent_secrets is not None:
            secrets = agent_secrets
    for header, secret_name in tool.agent_secret_headers.items():
        value = secrets.get(secret_name)
        if value:
            injected[header] = value
        else:
            missing.append(secret_name)
    if missing:
        # Names only: the values never appear in errors, audit rows or logs.
        return _refusal(
            CallStatus.ERROR,
            "missing_secret",
            f"tool {tool_id!r} needs the agent secret(s) {sorted(missing)}, which agent {agent_id!r} does not have",
            {"missing_secrets": sorted(missing)},
        )
    ctx = ToolContext(
        tool_id=tool_id,
        agent_id=agent_id,
        microdao_id=microdao_id,
        request_id=request_id,
        extra=dict(context or {}),
        secret_headers=injected,
    )
    sent = _secrets_sent(tool, injected)
    try:
        result = _scrubbed(await run(tool, args, ctx), sent)
    except Exception as exc:  # noqa: BLE001 - an executor bug is a failed call with a reason, never a 500
        logger.exception("executor %s failed on tool %s", tool.executor, tool_id)
        return _refusal(
            CallStatus.ERROR, "execution_error", redaction.redact(f"{type(exc).__name__}: {exc or 'no detail'}", sent)[:500]
        )
    # A failed result is returned as it is: an output-schema error must not hide the real one.
    if result.ok and tool.output_validator is not None:
        errors = validation_errors(tool.output_validator, result.result)
        if errors:
            return _refusal(
                CallStatus.INVALID_OUTPUT,
                "invalid_output",
                f"the result of {tool_id!r} does not match its output schema: {errors[0]['path']}: {errors[0]['message']}",
                errors,
            )
    return result


def _secrets_sent(tool: ToolDefinition, injected: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret header value a call of `tool` sends: the tool's own, its MCP server's and
    the calling agent's injected ones."""
    server = tool.mcp_server
    return redaction.secret_values(
        [*tool.secret_headers.values(), *injected.values(), *(server.secret_headers.values() if server is not None else ())]
    )


def _scrubbed(result: ExecutionResult, secrets: tuple[str, ...]) -> ExecutionResult:
    """`result` with the call's secrets removed from everything the target sent back (its error
    text, details and result), before any of it reaches the caller, the audit row or a log: a
    target may echo the headers it was sent (daarion/infra/redaction.py)."""
    if not secrets:
        return result
    return dataclasses.replace(
        result,
        result=redaction.redact_data(result.result, secrets),
        error=redaction.redact(result.error, secrets) if result.error else result.error,
        details=redaction.redact_data(result.details, secrets),
    )


async def tool_call_refused(
    *, tool_id: str, agent_id: str, microdao_id: str, error_type: str, error: str, request_id: str | None = None
) -> None:
    """Audits a call refused before toolcore looked at it (a token acting for another agent)."""
    metrics.observe_tool_call("unknown", CallStatus.DENIED, 0.0)
    await audit_enqueue(
        audit_entry(
            tool_id=tool_id,
            tool_version=None,
            agent_id=agent_id,
            microdao_id=microdao_id,
            args=None,
            status=CallStatus.DENIED,
            error_type=error_type,
            error=error,
            latency_ms=0.0,
            request_id=request_id or f"tc-{uuid.uuid4().hex}",
        )
    )
