"""manage.py create_service_token NAME --scopes llm memory [--agents agent:sofia] [--expires-days N]"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.access.choices import Scope
from daarion.infra.errors import ValidationFailed
from apps.access.services import service_token_create


class Command(BaseCommand):
    help = "Creates a service token and prints it once (it is stored hashed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--scopes", nargs="+", required=True, choices=Scope.values)
        parser.add_argument("--agents", nargs="+", default=None, help="agent ids the token may act for")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, name: str, scopes: list[str], agents: list[str] | None, expires_days: int | None, **opts) -> None:
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be positive")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            issued = service_token_create(name=name, scopes=scopes, agents=agents, expires_at=expires_at)
        except ValidationFailed as exc:
            raise CommandError(
                "; ".join(f"{k}: {', '.join(v)}" if k else ", ".join(v) for k, v in exc.by_path().items())
            ) from exc
        self.stderr.write(f"created token {name!r} with scopes {issued.token.scopes}; it is shown only now:")
        self.stdout.write(issued.raw)
