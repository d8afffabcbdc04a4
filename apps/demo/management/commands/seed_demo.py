"""manage.py seed_demo: an idempotent demo: admin user, a demo service token, and the demo
objects of each app (apps/demo: registry, agents, tools, memory).

The admin password and the token are kept in DATA_DIR/demo.json so that every `make run`
can print them again; this is a development convenience and refuses to run in production.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.access.choices import Scope
from apps.access.selectors import service_token_usable, service_tokens_named
from apps.access.services import service_token_create, service_token_delete
from apps.demo import agents, memory, registry, tools

DEMO_TOKEN_NAME = "demo"
ADMIN_USER = "admin"


class Command(BaseCommand):
    help = "Creates (or refreshes) the demo data, admin user and demo service token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="do not print the credentials")
        parser.add_argument(
            "--public-url",
            dest="public_url",
            help="where the server listens (http://host:port): points the demo HTTP tool there. Without it an "
            "existing demo tool keeps its target (`make run` passes the server's own address).",
        )

    def handle(self, *args, quiet: bool, public_url: str | None = None, **opts) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is for development; it refuses to run with DAARION_ENV=production")
        state_path = Path(settings.DATA_DIR) / "demo.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        with transaction.atomic():
            state["admin_user"] = ADMIN_USER
            state["admin_password"] = self._ensure_admin(state.get("admin_password"))
            state["service_token"] = self._ensure_token(state.get("service_token"))
        # In dependency order: the LLM registry first (the stub models, through the registry
        # engine), agents before tools (a tool's allowed_agents must name real agents: the demo
        # tools allow the demo agents), then memory.
        seeds = (registry.seed, agents.seed, lambda: tools.seed(public_url=public_url), memory.seed)
        for seed in seeds:
            for line in seed():
                self.stderr.write(f"seed_demo: {line}")
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=2))
        state_path.chmod(0o600)
        if not quiet:
            self.stdout.write(json.dumps(state, indent=2))

    def _ensure_admin(self, password: str | None) -> str:
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN_USER).first()
        if user is not None and password and user.check_password(password):
            return password
        password = password or secrets.token_urlsafe(12)
        if user is None:
            user_model.objects.create_superuser(ADMIN_USER, "admin@localhost", password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        return password

    def _ensure_token(self, raw: str | None) -> str:
        if raw and service_token_usable(raw):
            return raw
        for token in service_tokens_named(DEMO_TOKEN_NAME):
            service_token_delete(token=token)
        return service_token_create(name=DEMO_TOKEN_NAME, scopes=list(Scope.values)).raw
