"""manage.py import_registry FILE.yaml [--dry-run] [--prune]: applies a registry document
(providers, models, rate_limits, and tools / agents too) through the registry engine
(apps/registry/documents.py, the one POST /api/registry/apply uses) and prints its plan.
See docs/LLM_PROXY_SPEC.md and docs/REGISTRY_API.md."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.registry.documents import registry_apply
from daarion.audit import acting_as
from daarion.errors import DaarionError
from daarion.yaml_documents import DocumentRefused, yaml_document_load


class Command(BaseCommand):
    help = "Imports a registry document (providers, models, rate_limits, tools, agents) from YAML; idempotent."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a config.yaml ('-' reads standard input)")
        parser.add_argument("--dry-run", action="store_true", help="check and print the plan, write nothing")
        parser.add_argument(
            "--prune", action="store_true",
            help="also delete objects that a section of the file does not name (as POST /api/registry/apply does)",
        )

    def handle(self, *args, file: str, dry_run: bool, prune: bool, **opts) -> None:
        try:
            text = opts.get("stdin", sys.stdin).read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        try:
            data = yaml_document_load(text)
        except DocumentRefused as exc:
            raise CommandError(f"{file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CommandError(f"{file} is not valid YAML: {exc}") from exc
        try:
            with acting_as(f"cli:{getpass.getuser()}", "import"):
                # The file is the operator's: `{env: VAR}` secrets are read from this environment.
                plan = registry_apply(document=data, dry_run=dry_run, prune=prune, resolve_env=True)
        except DaarionError as exc:
            raise CommandError(exc.message) from exc
        for line in plan.lines():
            self.stdout.write(line)
