"""manage.py rotate_encryption_key: re-seals every encrypted column under the primary key."""

from __future__ import annotations

from collections import Counter

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast

from daarion.crypto import EncryptedTextField, key_id_of, key_ring


class Command(BaseCommand):
    help = (
        "Re-encrypts every EncryptedTextField value under the first key of DAARION_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")

    def handle(self, *args, dry_run: bool, **opts) -> None:
        primary = key_ring().primary_kid
        totals: Counter[str] = Counter()
        for model in apps.get_models():
            fields = [f for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]
            for fld in fields:
                rotated = self._rotate(model, fld.name, primary, dry_run)
                if rotated:
                    totals[f"{model._meta.label}.{fld.name}"] = rotated
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        for label, count in sorted(totals.items()):
            self.stdout.write(f"{label}: {verb} {count}")
        self.stdout.write(f"{verb} {sum(totals.values())} value(s) under key {primary!r}")

    def _rotate(self, model, field_name: str, primary: str, dry_run: bool) -> int:
        # Cast to a plain TextField reads the stored ciphertext without decrypting it.
        raw = model._default_manager.annotate(_raw=Cast(F(field_name), TextField())).exclude(_raw="").exclude(
            _raw__isnull=True
        )
        stale = [pk for pk, value in raw.values_list("pk", "_raw") if key_id_of(value) != primary]
        if dry_run or not stale:
            return len(stale)
        with transaction.atomic():
            for row in model._default_manager.select_for_update().filter(pk__in=stale):
                # Reading decrypts with the old key; saving seals with the primary one.
                model._default_manager.filter(pk=row.pk).update(**{field_name: getattr(row, field_name)})
        return len(stale)
