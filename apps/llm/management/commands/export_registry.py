"""manage.py export_registry [-o FILE]: writes the LLM registry in the import file's shape
(stored API keys are never written; `api_key_env` names are)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.llm.selectors import registry_export
from daarion.yaml_documents import yaml_document_dump


class Command(BaseCommand):
    help = "Exports providers, models and rate limits as YAML (the shape import_registry reads)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args, output: str | None, **opts) -> None:
        text = yaml_document_dump(registry_export())
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")
