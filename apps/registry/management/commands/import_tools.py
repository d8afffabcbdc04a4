"""manage.py import_tools FILE.yaml [--dry-run]: the `tools:` section of a file (the seed's
config.yaml, say) through the registry engine; the file's other sections are left alone."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.registry.cli import apply_file


class Command(BaseCommand):
    help = "Creates or updates tools from a YAML file's top-level `tools:` list (all or nothing)."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a YAML file ('-' reads standard input)")
        parser.add_argument("--dry-run", action="store_true", help="check and print the plan, write nothing")

    def handle(self, *args, file: str, dry_run: bool, **opts) -> None:
        plan = apply_file(file, opts, dry_run=dry_run, prune=False, sections=("tools",))
        for line in plan.lines():
            self.stdout.write(line)
