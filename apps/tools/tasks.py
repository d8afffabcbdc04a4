"""Celery tasks of toolcore: draining the tool-call audit queue into ToolCall rows (beat runs
it every TOOLS_AUDIT_DRAIN_SECONDS; see apps/tools/audit.py), and syncing upstream MCP servers."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from apps.tools.audit import audit_flush
from daarion.celery import Queue

# A run stops after this many batches of 500 and the next tick carries on, so one run never
# holds a worker (or the drain lock) for long however long the queue has grown.
_BATCHES_PER_RUN = 100


@shared_task(
    name="tools.flush_audit",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    expires=30,
)
def flush_audit() -> int:
    """Entries stay queued in Redis while Postgres is down; a replay never doubles a row.

    No retries: beat runs the task again within a second or so, and a retry beside the next
    tick would only queue the same work twice.
    """
    return audit_flush(max_batches=_BATCHES_PER_RUN)


@shared_task(
    name="tools.sync_mcp_server",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
    expires=600,
)
def sync_mcp_server(server_id: int) -> dict:
    """Syncs one upstream MCP server's tools (queued when a server is created or its url
    changes). A server deleted meanwhile is nothing to do. No retries: a failed listing is
    recorded on the server, and the periodic sync tries again."""
    from apps.tools.models import McpServer
    from apps.tools.services import mcp_server_sync

    server = McpServer.objects.filter(pk=server_id, enabled=True).first()
    if server is None:
        return {"skipped": "no such enabled server"}
    return asdict(mcp_server_sync(server=server))


@shared_task(
    name="tools.sync_mcp_servers",
    queue=Queue.DEFAULT,
    acks_late=True,
    reject_on_worker_lost=True,
)
def sync_mcp_servers() -> list[dict]:
    """Beat's periodic sync of every enabled upstream MCP server, one after another."""
    from apps.tools.models import McpServer
    from apps.tools.services import mcp_server_sync

    return [asdict(mcp_server_sync(server=server)) for server in McpServer.objects.filter(enabled=True)]
