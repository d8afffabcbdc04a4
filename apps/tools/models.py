"""Models of toolcore: tool definitions, upstream MCP servers and the call audit."""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.tools.choices import CallStatus, Executor, McpTransport
from daarion.infra.crypto import EncryptedTextField

TOOL_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
MCP_SERVER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MCP_PREFIX_PATTERN = r"^[A-Za-z0-9_-]{1,48}$"


class McpServer(models.Model):
    """An upstream MCP server whose tools toolcore offers as its own (executor `mcp`, ids
    `<prefix>.<upstream tool name>`). Written only through apps.tools.services; its tools
    are written by the sync (mcp_server_sync)."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(MCP_SERVER_NAME_PATTERN, "1-64 characters of A-Z a-z 0-9 _ -")],
    )
    url = models.CharField(max_length=2000, help_text="the streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
    transport = models.CharField(max_length=32, choices=McpTransport.choices, default=McpTransport.STREAMABLE_HTTP)
    prefix = models.CharField(
        max_length=48,
        validators=[RegexValidator(MCP_PREFIX_PATTERN, "1-48 characters of A-Z a-z 0-9 _ -")],
        help_text="tool ids are <prefix>.<upstream tool name>",
    )
    description = models.TextField(blank=True, default="")
    # None: every agent; []: no agent; a list: only those. Its tools start with this list and
    # follow its changes, unless a tool's own list was changed (then it keeps its own).
    allowed_agents = models.JSONField(null=True, blank=True, default=None)
    timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.05), MaxValueValidator(300.0)], help_text="seconds, per call"
    )
    enabled = models.BooleanField(default=True)
    # JSON object {header: value}, sealed at rest; sent to the upstream, never returned by an API.
    secret_headers = EncryptedTextField(blank=True, default="")
    agent_secret_headers = models.JSONField(
        default=dict, blank=True, help_text='{"X-Api-Key": "SECRET_NAME"}: the calling agent\'s secrets sent as headers'
    )
    # Found by the sync: the modern revision the upstream speaks ("" : handshake only).
    protocol_version = models.CharField(max_length=32, blank=True, default="", editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_error = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    audit_exclude = ("last_synced_at", "updated_at")

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["prefix"], name="tools_mcpserver_prefix_unique"),
            models.CheckConstraint(
                condition=models.Q(timeout__gt=0) & models.Q(timeout__lte=300), name="tools_mcpserver_timeout_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Tool(models.Model):
    """One tool an agent may call. Written only through apps.tools.services."""

    tool_id = models.CharField(
        "id",
        max_length=128,
        unique=True,
        validators=[RegexValidator(TOOL_ID_PATTERN, "1-128 characters of A-Z a-z 0-9 _ . -")],
        help_text="Stable id agents call, e.g. projects.list",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    input_schema = models.JSONField(default=dict, help_text="JSON Schema 2020-12 of the arguments (an object schema)")
    output_schema = models.JSONField(
        null=True, blank=True, help_text="JSON Schema 2020-12 of a successful result; empty: not checked"
    )
    executor = models.CharField(max_length=16, choices=Executor.choices)
    target = models.CharField(
        max_length=2000,
        help_text="http: the URL to POST to; python: the name of a registered @tool_function; mcp: the upstream tool name",
    )
    # None: every agent; []: no agent; a list: only those agents.
    allowed_agents = models.JSONField(null=True, blank=True, default=None)
    timeout = models.FloatField(default=10.0, validators=[MinValueValidator(0.05), MaxValueValidator(300.0)], help_text="seconds")
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    read_only = models.BooleanField(default=False, help_text="annotation: does not change anything")
    destructive = models.BooleanField(default=False, help_text="annotation: may delete or overwrite data")
    idempotent = models.BooleanField(default=False, help_text="annotation: repeating a call changes nothing more")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="calls per minute per agent; empty: no limit"
    )
    # JSON object {header: value}, sealed at rest; sent to HTTP targets, never returned by an API.
    secret_headers = EncryptedTextField(blank=True, default="")
    # {header: agent secret name}: the calling agent's secret sent as that header (names only;
    # the values live encrypted on the agent). A call by an agent without it fails.
    agent_secret_headers = models.JSONField(
        default=dict, blank=True, help_text='{"X-Api-Key": "SECRET_NAME"}: agent secrets sent as headers (http tools)'
    )
    # Set for executor `mcp`: the upstream server the tool comes from (target: its name there).
    mcp_server = models.ForeignKey(
        McpServer, null=True, blank=True, on_delete=models.PROTECT, related_name="tools", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["tool_id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(executor__in=Executor.values), name="tools_tool_executor_known"),
            models.CheckConstraint(
                condition=models.Q(timeout__gt=0) & models.Q(timeout__lte=300), name="tools_tool_timeout_range"
            ),
        ]

    def __str__(self) -> str:
        return self.tool_id


class ToolCall(models.Model):
    """Audit row of one call, allowed or not. Arguments are stored with secrets redacted."""

    # Written by the audit flusher with ignore_conflicts, so a batch replayed after a crash
    # never doubles a row.
    call_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tool_id = models.CharField(max_length=128, db_index=True)  # not a FK: unknown ids are audited too
    tool_version = models.PositiveIntegerField(null=True, blank=True)
    agent_id = models.CharField(max_length=200, db_index=True)
    microdao_id = models.CharField(max_length=200, blank=True, default="")
    args = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=CallStatus.choices)
    error_type = models.CharField(max_length=50, blank=True, default="")
    error = models.TextField(blank=True, default="")
    latency_ms = models.FloatField(default=0.0)
    request_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["agent_id", "created_at"], name="tools_call_agent_time")]

    def __str__(self) -> str:
        return f"{self.tool_id} by {self.agent_id}: {self.status}"
