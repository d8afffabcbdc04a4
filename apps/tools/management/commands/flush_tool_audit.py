"""manage.py flush_tool_audit: move queued tool-call audit entries into the database now."""

from django.core.management.base import BaseCommand

from apps.tools.audit import audit_flush


class Command(BaseCommand):
    help = (
        "Writes every queued tool-call audit entry to the ToolCall table (what beat's "
        "tools.flush_audit does every TOOLS_AUDIT_DRAIN_SECONDS). Writes nothing while another "
        "drain holds the lock."
    )

    def handle(self, *args, **opts) -> None:
        self.stdout.write(f"flushed {audit_flush()} audit entries")
