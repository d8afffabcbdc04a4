"""manage.py export_registry [-o FILE]: the whole registry as a document that import_registry
(and POST /api/registry/apply) reads back; secret values are never written, their names are,
as `{env: VAR}` references."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.registry.cli import write_document
from apps.registry.documents import registry_export


class Command(BaseCommand):
    help = "Exports every registry section as YAML (the shape import_registry reads)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args, output: str | None, **opts) -> None:
        write_document(self, registry_export(), output)
