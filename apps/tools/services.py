"""Writes and rules of toolcore: saving tools (one validation path for admin, import and API),
the tool call itself, the demo follow-ups, and upstream MCP servers with the sync of their tools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from apps.tools.audit import audit_enqueue, audit_entry
from apps.tools.choices import CallStatus, Executor
from apps.tools.contracts import redact, schema_problems, validation_errors
from apps.tools.executors import ExecutionResult, ToolContext, get_executor
from apps.tools.executors.python import registered_functions
from apps.tools.models import McpServer, Tool
from apps.tools.registry import TOOLS_CONFIG, ToolDefinition, registry_snapshot
from daarion.infra import redaction
from daarion.infra.agent_directory import unknown_agent_ids
from daarion.infra.errors import ValidationFailed, validate_model
from daarion.infra.live_config import bump_version
from daarion.observability import metrics, tracing
from daarion.infra.redis_client import LuaScript, get_async_redis, key
from daarion.infra.sliding_window import SLIDING_LUA, Window
from daarion.infra.storable import json_problem

logger = logging.getLogger(__name__)

_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
# Headers the executor sets itself; a secret may not replace them.
# An agent secret's name, as apps.agents.models.SECRET_NAME_RE allows it.
_AGENT_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_RESERVED_HEADERS = {"host", "content-type", "content-length", "accept", "x-request-id", "transfer-encoding", "connection"}

# Fields a caller may set on a tool (secret headers are handled apart: write-only).
TOOL_FIELDS = (
    "name",
    "description",
    "input_schema",
    "output_schema",
    "executor",
    "target",
    "allowed_agents",
    "timeout",
    "enabled",
    "read_only",
    "destructive",
    "idempotent",
    "rate_limit_per_minute",
    "agent_secret_headers",
)


# --- saving tools ------------------------------------------------------------------------


def clean_allowed_agents(value: Any) -> list[str] | None:
    """None (every agent) or a sorted list of distinct agent ids ([] = no agent)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ValidationFailed.on_fields({"allowed_agents": "must be null (every agent) or a list of agent ids"})
    return sorted({a.strip() for a in value if a.strip()})


def clean_secret_headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationFailed.on_fields({"secret_headers": "must be an object {header: value}"})
    cleaned: dict[str, str] = {}
    for name, secret in value.items():
        if not isinstance(name, str) or not _HEADER_RE.match(name):
            raise ValidationFailed.on_fields({"secret_headers": f"header name {name!r} is not a valid HTTP header name"})
        if name.lower() in _RESERVED_HEADERS:
            raise ValidationFailed.on_fields({"secret_headers": f"header {name!r} is set by toolcore and cannot be a secret"})
        if not isinstance(secret, str) or not secret or "\n" in secret or "\r" in secret:
            raise ValidationFailed.on_fields(
                {"secret_headers": f"value of header {name!r} must be a non-empty single-line string"}
            )
        cleaned[name] = secret
    return cleaned


def clean_agent_secret_headers(value: Any) -> dict[str, str]:
    """{header: agent secret name}, each header valid and not one toolcore sets itself."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed.on_fields({"agent_secret_headers": "must be an object {header: agent secret name}"})
    cleaned: dict[str, str] = {}
    seen: set[str] = set()
    for name, secret in value.items():
        if not isinstance(name, str) or not _HEADER_RE.match(name):
            raise ValidationFailed.on_fields({"agent_secret_headers": f"header name {name!r} is not a valid HTTP header name"})
        if name.lower() in _RESERVED_HEADERS:
            raise ValidationFailed.on_fields(
                {"agent_secret_headers": f"header {name!r} is set by toolcore and cannot be a secret"}
            )
        if name.lower() in seen:
            raise ValidationFailed.on_fields({"agent_secret_headers": f"header {name!r} appears twice"})
        seen.add(name.lower())
        if not isinstance(secret, str) or not _AGENT_SECRET_NAME_RE.match(secret):
            raise ValidationFailed.on_fields(
                {"agent_secret_headers": (f"header {name!r}: {secret!r} is not an agent secret name (letters, digits, _ . -)")}
            )
        cleaned[name] = secret
    return cleaned


def _field_problems(obj: Tool | McpServer, **full_clean: Any) -> dict[str, list[str]]:
    """The model's own field rules (full_clean), keyed by field: where both validations start."""
    errors: dict[str, list[str]] = {}
    try:
        validate_model(obj, exclude=["secret_headers"], **full_clean)
    except ValidationFailed as exc:
        for name, messages in exc.by_path().items():
            errors.setdefault(name, []).extend(messages)
    return errors


def _http_url_problem(url: str, what: str) -> str | None:
    """Why `url` cannot be called (`what` names it in the message), or None."""
    try:
        parts = urlsplit(url or "")
        parts.hostname  # noqa: B018 - parses the netloc: "http://[::1" raises here or above
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} must be an http(s):// URL with a host"
    if parts.username or parts.password:
        return "no credentials in the URL; use secret headers"
    return None


def _shared_problems(
    obj: Tool | McpServer, own_secrets: dict[str, str], errors: dict[str, list[str]], *, clash: str, unknown_agent: str
) -> None:
    """The rules a tool and an MCP server share: agent secret headers (one source per header)
    and allowed agents (only real ones: a typo would otherwise be a permission nobody holds;
    without the agents app no resolver is registered and every id is accepted)."""
    try:
        agent_headers = clean_agent_secret_headers(obj.agent_secret_headers)
    except ValidationFailed as exc:
        errors.setdefault("agent_secret_headers", []).extend(exc.messages)
    else:
        # One header, one source: the object's own secret or the agent's, never a silent override.
        own = {h.lower() for h in own_secrets}
        both = sorted(h for h in agent_headers if h.lower() in own)
        if both:
            errors.setdefault("agent_secret_headers", []).append(f"header(s) {both} are already {clash}")
    try:
        allowed = clean_allowed_agents(obj.allowed_agents)
    except ValidationFailed as exc:
        errors.setdefault("allowed_agents", []).extend(exc.messages)
    else:
        for agent_id in unknown_agent_ids(allowed or []):
            errors.setdefault("allowed_agents", []).append(unknown_agent.format(agent_id=agent_id))


def tool_validate(tool: Tool) -> None:
    """Every rule a tool must meet; raises ValidationFailed keyed by field. Used by all doors."""
    errors = _field_problems(tool, validate_unique=True)
    for problem in schema_problems(tool.input_schema, must_be_object=True):
        errors.setdefault("input_schema", []).append(problem)
    if tool.output_schema is not None:
        for problem in schema_problems(tool.output_schema, must_be_object=False):
            errors.setdefault("output_schema", []).append(problem)
    for name in ("input_schema", "output_schema"):
        # jsonb refuses NUL and lone surrogates: a 422 here, not a 500 from the INSERT.
        found = json_problem(getattr(tool, name), name)
        if found:
            errors.setdefault(name, []).append(f"{found[0]}: {found[1]}")
    if tool.executor == Executor.HTTP:
        url_problem = _http_url_problem(tool.target, "an http tool's target")
        if url_problem:
            errors.setdefault("target", []).append(url_problem)
    elif tool.executor == Executor.PYTHON:
        if tool.target not in registered_functions():
            errors.setdefault("target", []).append(
                f"no @tool_function is registered as {tool.target!r}; registered: {registered_functions()}"
            )
        if tool.secret_headers:
            errors.setdefault("secret_headers", []).append("secret headers are for http tools only")
        if tool.agent_secret_headers:
            errors.setdefault("agent_secret_headers", []).append("agent secret headers are for http tools only")
    elif tool.executor == Executor.MCP:
        if tool.mcp_server_id is None:
            errors.setdefault("executor", []).append(
                "mcp tools come from an MCP server: register the server (mcp-servers/) and its sync adds them"
            )
        if not tool.target:
            errors.setdefault("target", []).append("an mcp tool's target is its name on the upstream server")
        if tool.secret_headers:
            errors.setdefault("secret_headers", []).append("an mcp tool sends its server's secret headers")
    if tool.mcp_server_id is not None and tool.executor != Executor.MCP:
        errors.setdefault("executor", []).append("a tool synced from an MCP server keeps executor mcp")
    _shared_problems(
        tool,
        _secrets_of(tool),
        errors,
        clash="tool secret headers",
        unknown_agent=(
            "no agent {agent_id!r} in the registry (create the agent first, "
            "or list it under agents: in the same registry document)"
        ),
    )
    if errors:
        raise ValidationFailed.on_fields(errors)


def _secrets_of(obj: Tool | McpServer) -> dict[str, str]:
    return json.loads(obj.secret_headers) if obj.secret_headers else {}


def _apply(tool: Tool, data: dict[str, Any], secret_headers: Mapping[str, str | None] | None) -> bool:
    """Sets fields on `tool`; returns whether anything changed."""
    return bool(_apply_fields(tool, data, secret_headers, fields=TOOL_FIELDS, unknown="unknown tool field"))


def _apply_fields(
    obj: Tool | McpServer,
    data: dict[str, Any],
    secret_headers: Mapping[str, str | None] | None,
    *,
    fields: Iterable[str],
    unknown: str,
) -> dict[str, Any]:
    """Sets `data` (only `fields`) and merges `secret_headers` (a value sets its header, an
    empty one removes it) on a tool or an MCP server; returns {field: old value} of what changed
    (secret values are never returned: `secret_headers` maps to None)."""
    changed: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            raise ValidationFailed.on_fields({name: unknown})
        if name == "allowed_agents":
            value = clean_allowed_agents(value)
        if name == "agent_secret_headers" and value is None:
            value = {}
        if getattr(obj, name) != value:
            changed[name] = getattr(obj, name)
            setattr(obj, name, value)
    if secret_headers is not None:
        current = _secrets_of(obj)
        merged = {**current, **{k: v for k, v in secret_headers.items() if v}}
        for name, value in secret_headers.items():
            if not value:
                merged.pop(name, None)
        merged = clean_secret_headers(merged)
        if merged != current:
            obj.secret_headers = json.dumps(merged, sort_keys=True) if merged else ""
            changed["secret_headers"] = None
    return changed


@transaction.atomic
def tool_create(*, tool_id: str, secret_headers: dict[str, str] | None = None, **fields: Any) -> Tool:
    tool = Tool(tool_id=tool_id)
    _apply(tool, fields, secret_headers)
    tool_validate(tool)
    tool.save()
    bump_version(TOOLS_CONFIG)
    return tool


@transaction.atomic
def tool_update(*, tool: Tool, secret_headers: Mapping[str, str | None] | None = None, **fields: Any) -> Tool:
    """Changes fields; `secret_headers` merges (a None/empty value removes that header).

    The version goes up by one on every change; a save that changes nothing keeps it.
    """
    if not _apply(tool, fields, secret_headers):
        return tool
    tool_validate(tool)
    _save_change(tool)
    return tool


def _save_change(tool: Tool) -> None:
    # The row's version, not this object's, so two admins saving at once both count.
    tool.version = (Tool.objects.select_for_update().values_list("version", flat=True).get(pk=tool.pk)) + 1
    tool.updated_at = timezone.now()
    tool.save()
    bump_version(TOOLS_CONFIG)


@transaction.atomic
def tools_forget_agent(*, agent_id: str) -> list[Tool]:
    """Takes `agent_id` out of every tool's allowed_agents (the agent is being deleted), so
    no tool names an agent that is gone; returns the tools it changed.

    A list that becomes empty stays [] (no agent), never None (every agent). Only the list
    narrows, so the tool's other rules are not checked again here: a tool that a newer rule
    would refuse (say, a python target no longer registered) must not block deleting an agent.
    """
    changed = []
    for tool in Tool.objects.select_for_update().filter(allowed_agents__contains=[agent_id]).order_by("tool_id"):
        tool.allowed_agents = [a for a in tool.allowed_agents or [] if a != agent_id]
        _save_change(tool)
        changed.append(tool)
    # Upstream MCP servers name agents too (the list their new tools start with).
    for server in McpServer.objects.select_for_update().filter(allowed_agents__contains=[agent_id]).order_by("name"):
        server.allowed_agents = [a for a in server.allowed_agents or [] if a != agent_id]
        server.updated_at = timezone.now()
        server.save()
    return changed


@transaction.atomic
def tool_delete(*, tool: Tool) -> None:
    tool.delete()
    bump_version(TOOLS_CONFIG)


# --- export (the `tools:` section of a registry document) ----------------------------------


def tools_export() -> dict[str, Any]:
    """The registry as a `{tools: [...]}` document (secrets as header names only), without the
    tools synced from MCP servers."""
    out = []
    # Tools of an MCP server are the server's sync's to write: they travel as the server.
    for tool in Tool.objects.filter(mcp_server__isnull=True).order_by("tool_id"):
        item: dict[str, Any] = {
            "id": tool.tool_id,
            "name": tool.name,
            "description": tool.description,
            "input_schema": tool.input_schema,
            "output_schema": tool.output_schema,
            "executor": tool.executor,
            "target": tool.target,
            "allowed_agents": tool.allowed_agents,
            "timeout": tool.timeout,
            "enabled": tool.enabled,
            "annotations": {"read_only": tool.read_only, "destructive": tool.destructive, "idempotent": tool.idempotent},
            "rate_limit_per_minute": tool.rate_limit_per_minute,
        }
        if tool.agent_secret_headers:
            item["agent_secret_headers"] = dict(tool.agent_secret_headers)
        secrets = _secrets_of(tool)
        if secrets:
            env_base = "TOOL_SECRET_" + re.sub(r"[^A-Z0-9]", "_", tool.tool_id.upper())
            item["secrets"] = {h: {"env": f"{env_base}_{re.sub(r'[^A-Z0-9]', '_', h.upper())}"} for h in sorted(secrets)}
        out.append(item)
    return {"tools": out}


# --- calling a tool ----------------------------------------------------------------------


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


# --- upstream MCP servers ----------------------------------------------------------------
# An McpServer is saved through these services like any registry object (one validation path
# for admin, registry API and documents); its tools are written by the sync only.

MCP_SERVER_FIELDS = (
    "url",
    "transport",
    "prefix",
    "description",
    "allowed_agents",
    "timeout",
    "enabled",
    "agent_secret_headers",
)
# Upstream tool names the MCP spec allows but tool ids do not (anything outside A-Z a-z 0-9 _ . -).
_TOOL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def mcp_server_validate(server: McpServer) -> None:
    """Every rule an MCP server must meet; raises ValidationFailed keyed by field."""
    errors = _field_problems(server)
    problem = _http_url_problem(server.url, "an MCP server's url")
    if problem:
        errors.setdefault("url", []).append(problem)
    _shared_problems(
        server, _secrets_of(server), errors, clash="secret headers", unknown_agent="no agent {agent_id!r} in the registry"
    )
    if errors:
        raise ValidationFailed.on_fields(errors)


def _apply_server(server: McpServer, data: dict[str, Any], secret_headers: Mapping[str, str | None] | None) -> dict[str, Any]:
    """Sets fields on `server`; returns {field: old value} of what changed."""
    return _apply_fields(server, data, secret_headers, fields=MCP_SERVER_FIELDS, unknown="unknown MCP server field")


def _enqueue_sync(server: McpServer) -> None:
    from django.conf import settings

    from apps.tools.tasks import sync_mcp_server

    server_id, queue = server.pk, settings.TOOLS_MCP_SYNC_QUEUE

    def _send() -> None:
        # Fire and forget: no result to wait for, one try. With Redis down the server is saved
        # all the same and beat's tools.sync_mcp_servers lists its tools later.
        try:
            sync_mcp_server.apply_async(args=(server_id,), queue=queue, retry=False, ignore_result=True)
        except Exception:
            logger.warning("could not queue the MCP server's sync; beat's periodic sync will", exc_info=True)

    transaction.on_commit(_send)


@transaction.atomic
def mcp_server_create(*, name: str, secret_headers: dict[str, str] | None = None, sync: bool = True, **fields: Any) -> McpServer:
    """Saves a new server and, once committed, queues the sync of its tools (`sync=False`: not)."""
    fields.setdefault("prefix", name)
    server = McpServer(name=name)
    _apply_server(server, fields, secret_headers)
    mcp_server_validate(server)
    server.save()
    bump_version(TOOLS_CONFIG)
    if sync:
        _enqueue_sync(server)
    return server


@transaction.atomic
def mcp_server_update(*, server: McpServer, secret_headers: Mapping[str, str | None] | None = None, **fields: Any) -> McpServer:
    """Changes fields (`secret_headers` merges; a None/empty value removes that header).

    Its tools follow: a new allowed_agents or timeout replaces theirs where they still had the
    server's old value (a tool changed on its own keeps its own), agent_secret_headers replaces
    theirs. A new url or prefix queues a sync.
    """
    if "prefix" in fields and fields["prefix"] != server.prefix and server.tools.exists():
        raise ValidationFailed.on_fields(
            {"prefix": "the prefix of a server with tools cannot change (tool ids would change); register a new server instead"}
        )
    changed = _apply_server(server, fields, secret_headers)
    if not changed:
        return server
    mcp_server_validate(server)
    server.updated_at = timezone.now()
    server.save()
    for tool in Tool.objects.select_for_update().filter(mcp_server=server).order_by("tool_id"):
        updates: dict[str, Any] = {}
        if "allowed_agents" in changed and tool.allowed_agents == changed["allowed_agents"]:
            updates["allowed_agents"] = server.allowed_agents
        if "timeout" in changed and tool.timeout == changed["timeout"]:
            updates["timeout"] = server.timeout
        if "agent_secret_headers" in changed:
            updates["agent_secret_headers"] = dict(server.agent_secret_headers)
        if updates and _apply(tool, updates, None):
            tool_validate(tool)
            _save_change(tool)
    bump_version(TOOLS_CONFIG)
    if "url" in changed or ("enabled" in changed and server.enabled):
        _enqueue_sync(server)
    return server


@transaction.atomic
def mcp_server_delete(*, server: McpServer) -> list[str]:
    """Deletes the server; its tools are kept, disabled and detached (never silently deleted:
    their audit history names them). Returns their ids."""
    kept = []
    for tool in Tool.objects.select_for_update().filter(mcp_server=server).order_by("tool_id"):
        tool.enabled = False
        tool.mcp_server = None
        _save_change(tool)
        kept.append(tool.tool_id)
    server.delete()
    bump_version(TOOLS_CONFIG)
    return kept


@dataclass
class McpSyncReport:
    server: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # upstream tool name -> why
    error: str = ""
    protocol_version: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _synced_fields(server: McpServer, upstream: Any) -> dict[str, Any]:
    annotations = upstream.annotations
    output = upstream.output_schema
    return {
        "name": (upstream.title or (annotations.title if annotations else None) or upstream.name)[:200],
        "description": upstream.description or "",
        "input_schema": dict(upstream.input_schema),
        "output_schema": dict(output) if output is not None else None,
        "executor": Executor.MCP,
        "target": upstream.name,
        "read_only": bool(annotations and annotations.read_only_hint),
        "destructive": bool(annotations and annotations.destructive_hint),
        "idempotent": bool(annotations and annotations.idempotent_hint),
    }


def mcp_tool_id(prefix: str, upstream_name: str) -> str:
    return f"{prefix}.{_TOOL_ID_UNSAFE.sub('_', upstream_name)}"


def mcp_server_sync(*, server: McpServer) -> McpSyncReport:
    """Lists the upstream's tools and upserts them as tools of executor `mcp`.

    New upstream tools are created with the server's allowed_agents, timeout and agent secret
    headers; known ones get the upstream's current name, description, schemas and annotations
    (their permissions stay as they are); a tool gone upstream is disabled, never deleted, and
    one that comes back stays disabled until someone enables it. A failed listing changes no
    tool and is kept in `last_sync_error`.
    """
    from asgiref.sync import async_to_sync

    from apps.tools.mcp.upstream import upstream_list_tools

    report = McpSyncReport(server=server.name)
    try:
        listing = async_to_sync(upstream_list_tools)(url=server.url, headers=_secrets_of(server), timeout=server.timeout)
    except Exception as exc:  # noqa: BLE001 - a failed sync is reported and recorded, never a crash
        while isinstance(exc, ExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        # The upstream's text may repeat the headers it was sent (daarion/infra/redaction.py).
        report.error = redaction.redact(
            f"{type(exc).__name__}: {exc or 'no detail'}", redaction.secret_values(_secrets_of(server).values())
        )[:1000]
        logger.warning("sync of MCP server %s failed: %s", server.name, report.error)
        McpServer.objects.filter(pk=server.pk).update(last_sync_error=report.error, last_synced_at=timezone.now())
        return report
    report.protocol_version = listing.protocol_version
    with transaction.atomic():
        server = McpServer.objects.select_for_update().get(pk=server.pk)
        known = {tool.target: tool for tool in Tool.objects.select_for_update().filter(mcp_server=server)}
        seen: set[str] = set()
        for upstream in listing.tools:
            seen.add(upstream.name)
            fields = _synced_fields(server, upstream)
            try:
                with transaction.atomic():
                    tool = known.get(upstream.name)
                    if tool is None:
                        tool_id = mcp_tool_id(server.prefix, upstream.name)
                        if Tool.objects.filter(tool_id=tool_id).exists():
                            raise ValidationFailed.on_fields({"tool_id": f"{tool_id!r} is taken by another tool"})
                        tool = Tool(
                            tool_id=tool_id,
                            mcp_server=server,
                            allowed_agents=server.allowed_agents,
                            timeout=server.timeout,
                            agent_secret_headers=dict(server.agent_secret_headers),
                        )
                        _apply(tool, fields, None)
                        tool_validate(tool)
                        tool.save()
                        report.created.append(tool.tool_id)
                    elif _apply(tool, fields, None):
                        tool_validate(tool)
                        _save_change(tool)
                        report.updated.append(tool.tool_id)
                    else:
                        report.unchanged.append(tool.tool_id)
            except ValidationFailed as exc:
                report.skipped[upstream.name] = "; ".join(
                    f"{k}: {'; '.join(v)}" if k else "; ".join(v) for k, v in exc.by_path().items()
                )
        for name, tool in sorted(known.items()):
            if name not in seen and tool.enabled:
                tool.enabled = False
                _save_change(tool)
                report.disabled.append(tool.tool_id)
        McpServer.objects.filter(pk=server.pk).update(
            protocol_version=listing.protocol_version,
            last_synced_at=timezone.now(),
            last_sync_error="; ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items()))[:2000],
        )
        bump_version(TOOLS_CONFIG)
    return report


def mcp_servers_export() -> list[dict[str, Any]]:
    """The MCP servers as registry-document items (secret headers as `{env: VAR}` names only)."""
    out = []
    for server in McpServer.objects.order_by("name"):
        item: dict[str, Any] = {
            "name": server.name,
            "url": server.url,
            "transport": server.transport,
            "prefix": server.prefix,
            "description": server.description,
            "allowed_agents": server.allowed_agents,
            "timeout": server.timeout,
            "enabled": server.enabled,
            "agent_secret_headers": dict(server.agent_secret_headers),
        }
        secrets = _secrets_of(server)
        if secrets:
            base = "MCP_SERVER_" + re.sub(r"[^A-Z0-9]", "_", server.name.upper())
            item["headers"] = {h: {"env": f"{base}_{re.sub(r'[^A-Z0-9]', '_', h.upper())}"} for h in sorted(secrets)}
        out.append(item)
    return out


def mcp_server_secret_header_names(server: McpServer) -> list[str]:
    return sorted(_secrets_of(server))
