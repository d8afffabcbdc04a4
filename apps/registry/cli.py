"""What the registry commands (management/commands/) share: reading a document file, applying it as the
operator, writing one out."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.registry.documents import Plan, registry_apply
from apps.registry.formats import DocumentSyntaxError, dump_document, load_document
from apps.access.audit import acting_as
from daarion.infra.errors import DaarionError


def read_file(file: str, opts: dict[str, Any]) -> Any:
    try:
        text = cast(TextIO, opts.get("stdin", sys.stdin)).read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
    try:
        return load_document(text)
    except DocumentSyntaxError as exc:
        raise CommandError(f"{file} is {exc}") from exc


def apply_file(file: str, opts: dict[str, Any], *, dry_run: bool, prune: bool, sections: Sequence[str] | None = None) -> Plan:
    """Applies the file (only `sections` of it, when given) and returns the plan; a refusal is
    a CommandError with the engine's message (the path in the document and the problem)."""
    document = read_file(file, opts)
    if sections is not None:
        if not isinstance(document, dict) or not all(isinstance(document.get(s), list) for s in sections):
            raise CommandError(f"{file}: expected a mapping with a top-level {', '.join(f'`{s}:`' for s in sections)} list")
        document = {section: document[section] for section in sections}
    try:
        with acting_as(f"cli:{getpass.getuser()}", "import"):
            # The file is the operator's: `{env: VAR}` secrets are read from this environment.
            return registry_apply(document=document, dry_run=dry_run, prune=prune, resolve_env=True)
    except DaarionError as exc:
        raise CommandError(refusal_text(exc)) from exc


def refusal_text(exc: DaarionError) -> str:
    """The engine's refusal as the API's details say it: one `path: message` line each."""
    details = exc.details if isinstance(exc.details, list) else []
    lines = [f"{d['path']}: {d['message']}" for d in details if isinstance(d, dict) and {"path", "message"} <= set(d)]
    return "\n".join(lines) or exc.message


def write_document(command: BaseCommand, data: dict[str, Any], output: str | None) -> None:
    text = dump_document(data)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        command.stderr.write(f"wrote {output}")
    else:
        command.stdout.write(text, ending="")


class ImportCommand(BaseCommand):
    """`manage.py import_* FILE [--dry-run]`: applies `sections` of a document file (every
    section when None, which also offers `--prune`) and prints the plan."""

    sections: tuple[str, ...] | None = None
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a YAML or JSON document ('-' reads standard input)")
        parser.add_argument("--dry-run", action="store_true", help="check and print the plan, write nothing")
        if self.sections is None:
            parser.add_argument(
                "--prune",
                action="store_true",
                help="also delete objects that a section of the file does not name (as POST /api/registry/apply does)",
            )

    def handle(self, *args: Any, file: str, dry_run: bool, prune: bool = False, **opts: Any) -> None:
        plan = apply_file(file, opts, dry_run=dry_run, prune=prune, sections=self.sections)
        for line in plan.lines():
            self.stdout.write(line)
