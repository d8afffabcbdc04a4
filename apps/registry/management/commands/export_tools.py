"""manage.py export_tools [-o FILE]: the `tools:` section of export_registry, which
import_tools reads back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.registry.cli import write_document
from apps.registry.documents import registry_export


class Command(BaseCommand):
    help = "Writes every tool as a YAML `tools:` document (secret values are never written)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args, output: str | None, **opts) -> None:
        write_document(self, {"tools": registry_export(sections=("tools",))["tools"]}, output)
