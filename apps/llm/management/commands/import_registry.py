"""manage.py import_registry FILE.yaml [--dry-run]: upserts providers, models and rate limits
from a file in the seed's config.yaml shape (see docs/LLM_PROXY_SPEC.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.llm.services import registry_import
from daarion.errors import DaarionError


class Command(BaseCommand):
    help = "Imports the LLM registry (providers, models, rate_limits) from a YAML file; idempotent."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a config.yaml ('-' reads standard input)")
        parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")

    def handle(self, *args, file: str, dry_run: bool, **opts) -> None:
        try:
            text = opts.get("stdin", sys.stdin).read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CommandError(f"{file} is not valid YAML: {exc}") from exc
        try:
            report = registry_import(data=data, dry_run=dry_run)
        except DaarionError as exc:
            raise CommandError(exc.message) from exc
        prefix = "would be " if dry_run else ""
        for label, items in (("created", report.created), ("updated", report.updated), ("deleted", report.deleted)):
            for item in items:
                self.stdout.write(f"{prefix}{label}: {item}")
        self.stdout.write(
            f"{'dry run: ' if dry_run else ''}{len(report.created)} {prefix}created, {len(report.updated)} {prefix}updated, "
            f"{len(report.unchanged)} unchanged"
        )
