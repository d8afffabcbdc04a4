"""Upstream MCP servers: saved through these services like any registry object (create, update,
delete, export), and the sync that writes their tools (the only writer of those)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.tools.choices import Executor
from apps.tools.models import McpServer, Tool
from apps.tools.registry import TOOLS_CONFIG
from apps.tools.services.tools import tool_save_changes, touch
from apps.tools.services.validation import clean_changes, mcp_server_validate, secret_headers_of, tool_validate
from daarion.infra import redaction
from daarion.infra.errors import ValidationFailed
from daarion.infra.live_config import bump_version
from daarion.infra.model_update import model_update

logger = logging.getLogger(__name__)

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


def _server_changes(
    server: McpServer, data: Mapping[str, Any], secret_headers: Mapping[str, str | None] | None
) -> dict[str, Any]:
    return clean_changes(server, data, secret_headers, fields=MCP_SERVER_FIELDS, unknown="unknown MCP server field")


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
    for attr, value in _server_changes(server, fields, secret_headers).items():
        setattr(server, attr, value)
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
    data = _server_changes(server, fields, secret_headers)
    before = {attr: getattr(server, attr) for attr in data}
    if not model_update(
        instance=server, fields=(*MCP_SERVER_FIELDS, "secret_headers"), data=data, validate=mcp_server_validate, stamp=touch
    ):
        return server
    changed = {attr: old for attr, old in before.items() if getattr(server, attr) != old}
    for tool in Tool.objects.select_for_update().filter(mcp_server=server).order_by("tool_id"):
        updates: dict[str, Any] = {}
        if "allowed_agents" in changed and tool.allowed_agents == changed["allowed_agents"]:
            updates["allowed_agents"] = server.allowed_agents
        if "timeout" in changed and tool.timeout == changed["timeout"]:
            updates["timeout"] = server.timeout
        if "agent_secret_headers" in changed:
            updates["agent_secret_headers"] = dict(server.agent_secret_headers)
        if updates:
            tool_save_changes(tool=tool, data=updates)
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
        # Not checked: a detached mcp tool breaks the rule that mcp tools have a server.
        tool_save_changes(tool=tool, data={"enabled": False, "mcp_server": None}, check=False)
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
        listing = async_to_sync(upstream_list_tools)(url=server.url, headers=secret_headers_of(server), timeout=server.timeout)
    except Exception as exc:  # noqa: BLE001 - a failed sync is reported and recorded, never a crash
        while isinstance(exc, ExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        # The upstream's text may repeat the headers it was sent (daarion/infra/redaction.py).
        report.error = redaction.redact(
            f"{type(exc).__name__}: {exc or 'no detail'}", redaction.secret_values(secret_headers_of(server).values())
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
                            **fields,
                        )
                        tool_validate(tool)
                        tool.save()
                        report.created.append(tool.tool_id)
                    elif tool_save_changes(tool=tool, data=fields):
                        report.updated.append(tool.tool_id)
                    else:
                        report.unchanged.append(tool.tool_id)
            except ValidationFailed as exc:
                report.skipped[upstream.name] = "; ".join(
                    f"{k}: {'; '.join(v)}" if k else "; ".join(v) for k, v in exc.by_path().items()
                )
        for name, tool in sorted(known.items()):
            if name not in seen and tool.enabled:
                tool_save_changes(tool=tool, data={"enabled": False}, check=False)
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
        secrets = secret_headers_of(server)
        if secrets:
            base = "MCP_SERVER_" + re.sub(r"[^A-Z0-9]", "_", server.name.upper())
            item["headers"] = {h: {"env": f"{base}_{re.sub(r'[^A-Z0-9]', '_', h.upper())}"} for h in sorted(secrets)}
        out.append(item)
    return out
