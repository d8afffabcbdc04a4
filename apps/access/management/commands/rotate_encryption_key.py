"""manage.py rotate_encryption_key: re-seals every encrypted column under the primary key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from daarion.infra.crypto import key_ring
from apps.access.services import encryption_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypts every EncryptedTextField value under the first key of DAARION_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")

    def handle(self, *args, dry_run: bool, **opts) -> None:
        counts = encryption_rotate(dry_run=dry_run)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        for label, count in sorted(counts.items()):
            self.stdout.write(f"{label}: {verb} {count}")
        self.stdout.write(f"{verb} {sum(counts.values())} value(s) under key {key_ring().primary_kid!r}")
