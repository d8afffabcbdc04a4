"""Fixed vocabularies of toolcore: executor kinds, MCP transports and call statuses."""

from django.db import models


class Executor(models.TextChoices):
    HTTP = "http", "HTTP endpoint"
    PYTHON = "python", "Registered Python function"
    MCP = "mcp", "Tool of an upstream MCP server"


class McpTransport(models.TextChoices):
    STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"


class CallStatus(models.TextChoices):
    """The audit status of one tool call (allowed or not)."""

    OK = "ok", "ok"
    NOT_FOUND = "not_found", "unknown or disabled tool"
    DENIED = "denied", "agent not allowed"
    INVALID_ARGS = "invalid_args", "arguments failed input_schema"
    RATE_LIMITED = "rate_limited", "over the per-agent rate limit"
    TIMEOUT = "timeout", "executor timed out"
    ERROR = "error", "executor failed"
    INVALID_OUTPUT = "invalid_output", "result failed output_schema"
