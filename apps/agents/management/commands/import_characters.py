"""manage.py import_characters PATH: create or update agents from character JSON files."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.agents.services import agent_import_character
from daarion.infra.errors import DaarionError


class _DryRun(Exception):
    """Raised inside the transaction to roll a --dry-run import back."""


class Command(BaseCommand):
    help = (
        "Imports character JSON files (elizaOS shape) as agents. PATH is a file or a folder "
        "of *.json files. Each file imports on its own: a bad file is reported and skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--microdao", dest="microdao_id", help="microDAO for files whose settings name none")
        parser.add_argument("--model", help="logical model for files whose settings name none")
        parser.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")

    def handle(self, *args, path: Path, microdao_id: str | None, model: str | None, dry_run: bool, **opts) -> None:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
            if not files:
                raise CommandError(f"{path}: no .json files in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise CommandError(f"{path}: no such file or folder")
        failed = 0
        for file in files:
            try:
                line = self._import_one(file, microdao_id=microdao_id, model=model, dry_run=dry_run)
            except (DaarionError, ValueError, OSError) as exc:
                failed += 1
                self.stderr.write(f"{file}: error: {self._explain(exc)}")
                continue
            self.stdout.write(f"{file}: {line}")
        summary = f"{len(files) - failed} imported, {failed} failed" + (" (dry run: nothing written)" if dry_run else "")
        self.stdout.write(summary)
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) could not be imported")

    def _import_one(self, file: Path, *, microdao_id: str | None, model: str | None, dry_run: bool) -> str:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError("not UTF-8 text") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        try:
            with transaction.atomic():
                result = agent_import_character(document=document, microdao_id=microdao_id, model=model)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        action = (
            "would create"
            if dry_run and result.created
            else "would update"
            if dry_run
            else ("created" if result.created else "updated" if result.changed else "unchanged")
        )
        secrets = f", secrets: {', '.join(result.secrets)}" if result.secrets else ""
        return f"{action} {result.agent_id}{secrets}"

    @staticmethod
    def _explain(exc: Exception) -> str:
        if isinstance(exc, DaarionError) and isinstance(exc.details, list) and exc.details:
            return "; ".join(f"{d.get('path') or '(document)'}: {d.get('message')}" for d in exc.details)
        return str(exc)
