"""manage.py export_tools [-o FILE]: the registry as YAML that import_tools reads back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.tools.services import tools_export
from daarion.yaml_documents import yaml_document_dump


class Command(BaseCommand):
    help = "Writes every tool as a YAML `tools:` document (secret values are never written)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="file to write; default: stdout")

    def handle(self, *args, output: str | None, **opts) -> None:
        text = yaml_document_dump(tools_export())
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text)
