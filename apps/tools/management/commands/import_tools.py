"""manage.py import_tools FILE.yaml [--dry-run]: load the seed's config.yaml `tools:` list."""

from __future__ import annotations

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tools.services import tools_import
from daarion.yaml_documents import DocumentRefused, yaml_document_load


class Command(BaseCommand):
    help = "Creates or updates tools from a YAML file with a top-level `tools:` list (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--dry-run", action="store_true", help="check and report; change nothing")

    def handle(self, *args, file: str, dry_run: bool, **opts) -> None:
        try:
            with open(file, encoding="utf-8") as handle:
                document = yaml_document_load(handle.read())
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from exc
        except DocumentRefused as exc:
            raise CommandError(f"{file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CommandError(f"{file}: not valid YAML: {exc}") from exc
        try:
            report = tools_import(document=document, dry_run=dry_run)
        except ValidationError as exc:
            raise CommandError(f"{file}: nothing imported:\n  " + "\n  ".join(exc.messages)) from exc
        prefix = "dry run: would have " if dry_run else ""
        self.stdout.write(
            f"{prefix}created {len(report.created)}, updated {len(report.updated)}, "
            f"unchanged {len(report.unchanged)}"
        )
        for label, ids in (("created", report.created), ("updated", report.updated), ("unchanged", report.unchanged)):
            for tool_id in ids:
                self.stdout.write(f"  {label}: {tool_id}")
