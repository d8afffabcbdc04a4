"""manage.py sync_mcp_servers [NAME ...]: list upstream MCP servers' tools and upsert them now."""

from django.core.management.base import BaseCommand, CommandError

from apps.tools.models import McpServer
from apps.tools.services import mcp_server_sync
from apps.access.audit import acting_as


class Command(BaseCommand):
    help = (
        "Syncs the tools of the named upstream MCP servers (all enabled ones without a name), as "
        "beat's tools.sync_mcp_servers does every TOOLS_MCP_SYNC_SECONDS: new tools are created, "
        "changed ones updated, tools gone upstream disabled (never deleted)."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("names", nargs="*", help="server names (default: every enabled server)")

    def handle(self, *args, **opts) -> None:
        names = opts["names"]
        servers = list(McpServer.objects.filter(name__in=names) if names else McpServer.objects.filter(enabled=True))
        missing = sorted(set(names) - {s.name for s in servers})
        if missing:
            raise CommandError(f"no MCP server named {', '.join(missing)}")
        failed = []
        with acting_as("sync_mcp_servers", "cli"):
            for server in servers:
                report = mcp_server_sync(server=server)
                if report.error:
                    failed.append(server.name)
                    self.stderr.write(f"{server.name}: sync failed: {report.error}")
                    continue
                self.stdout.write(
                    f"{server.name}: {len(report.created)} created, {len(report.updated)} updated, "
                    f"{len(report.disabled)} disabled, {len(report.unchanged)} unchanged"
                    + (f", protocol {report.protocol_version}" if report.protocol_version else ", handshake protocol")
                )
                for name, why in sorted(report.skipped.items()):
                    self.stderr.write(f"{server.name}: skipped upstream tool {name!r}: {why}")
        if failed:
            raise CommandError(f"sync failed for {', '.join(failed)}")
