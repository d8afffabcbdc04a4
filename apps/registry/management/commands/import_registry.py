"""manage.py import_registry FILE.yaml [--dry-run] [--prune]: applies a registry document
(providers, models, rate_limits, agents, tools, mcp_servers) through the registry engine
(apps/registry/documents/, the one POST /api/registry/apply uses) and prints its plan.
See docs/REGISTRY_API.md."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.registry.cli import apply_file


class Command(BaseCommand):
    help = "Imports a registry document (every section) from YAML or JSON; idempotent."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a config.yaml ('-' reads standard input)")
        parser.add_argument("--dry-run", action="store_true", help="check and print the plan, write nothing")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="also delete objects that a section of the file does not name (as POST /api/registry/apply does)",
        )

    def handle(self, *args, file: str, dry_run: bool, prune: bool, **opts) -> None:
        plan = apply_file(file, opts, dry_run=dry_run, prune=prune)
        for line in plan.lines():
            self.stdout.write(line)
