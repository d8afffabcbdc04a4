"""The rules of what a tool and an MCP server may hold: the clean_* functions, the changes an
update asks for (write-only secret headers merged), `tool_validate` and `mcp_server_validate`
(one validation path for admin, registry API and documents), and the sealed secret headers
read back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from apps.tools.choices import Executor
from apps.tools.contracts import schema_problems
from apps.tools.executors.python import registered_functions
from apps.tools.models import McpServer, Tool
from daarion.infra.agent_directory import unknown_agent_ids
from daarion.infra.errors import ValidationFailed, validate_model
from daarion.infra.storable import json_problem

_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
# An agent secret's name, as apps.agents.models.SECRET_NAME_RE allows it.
_AGENT_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
# Headers the executor sets itself; a secret may not replace them.
_RESERVED_HEADERS = {"host", "content-type", "content-length", "accept", "x-request-id", "transfer-encoding", "connection"}


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


def clean_changes(
    obj: Tool | McpServer,
    data: Mapping[str, Any],
    secret_headers: Mapping[str, str | None] | None,
    *,
    fields: Iterable[str],
    unknown: str,
) -> dict[str, Any]:
    """The values `data` (only `fields`, else `unknown` on the field) and `secret_headers` ask a
    tool or an MCP server to take, cleaned: `allowed_agents` normalised, `agent_secret_headers`
    None as {}, and `secret_headers` merged into the stored ones (a value sets its header, an
    empty one removes it), present only when the merged headers differ from the stored ones."""
    fields = tuple(fields)
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            raise ValidationFailed.on_fields({name: unknown})
        if name == "allowed_agents":
            value = clean_allowed_agents(value)
        if name == "agent_secret_headers" and value is None:
            value = {}
        values[name] = value
    if secret_headers is not None:
        current = secret_headers_of(obj)
        merged = {**current, **{k: v for k, v in secret_headers.items() if v}}
        for name, secret in secret_headers.items():
            if not secret:
                merged.pop(name, None)
        merged = clean_secret_headers(merged)
        if merged != current:
            values["secret_headers"] = json.dumps(merged, sort_keys=True) if merged else ""
    return values


# --- the sealed secret headers -----------------------------------------------------------


def secret_headers_of(obj: Tool | McpServer) -> dict[str, str]:
    """The `{header: value}` a tool or an MCP server sends (opened: for the services only)."""
    return json.loads(obj.secret_headers) if obj.secret_headers else {}


def secret_header_names(obj: Tool | McpServer) -> list[str]:
    """The header names of a tool's or an MCP server's sealed secret headers, for answers that
    show which are set; the values are dropped here."""
    try:
        value = secret_headers_of(obj)
    except ValueError:
        return []
    return sorted(value) if isinstance(value, dict) else []


# --- the rules ---------------------------------------------------------------------------


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


def _shared_problems(obj: Tool | McpServer, errors: dict[str, list[str]], *, clash: str, unknown_agent: str) -> None:
    """The rules a tool and an MCP server share: agent secret headers (one source per header)
    and allowed agents (only real ones: a typo would otherwise be a permission nobody holds;
    without the agents app no resolver is registered and every id is accepted)."""
    try:
        agent_headers = clean_agent_secret_headers(obj.agent_secret_headers)
    except ValidationFailed as exc:
        errors.setdefault("agent_secret_headers", []).extend(exc.messages)
    else:
        # One header, one source: the object's own secret or the agent's, never a silent override.
        own = {h.lower() for h in secret_headers_of(obj)}
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
        errors,
        clash="tool secret headers",
        unknown_agent=(
            "no agent {agent_id!r} in the registry (create the agent first, "
            "or list it under agents: in the same registry document)"
        ),
    )
    if errors:
        raise ValidationFailed.on_fields(errors)


def mcp_server_validate(server: McpServer) -> None:
    """Every rule an MCP server must meet; raises ValidationFailed keyed by field."""
    errors = _field_problems(server)
    problem = _http_url_problem(server.url, "an MCP server's url")
    if problem:
        errors.setdefault("url", []).append(problem)
    _shared_problems(server, errors, clash="secret headers", unknown_agent="no agent {agent_id!r} in the registry")
    if errors:
        raise ValidationFailed.on_fields(errors)
