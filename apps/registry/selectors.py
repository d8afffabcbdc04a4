"""Reads of the management API that no owning app has: when a secret was last set."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Model

from apps.access.models import ChangeRecord


def secret_changed_at(*, instance: Model, field: str) -> datetime | None:
    """When `field` (an encrypted field) of `instance` was last set, from the change log."""
    row = (
        ChangeRecord.objects.filter(object_type=instance._meta.label, object_id=str(instance.pk), changes__has_key=field)
        .exclude(action=ChangeRecord.Action.DELETE)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )
    return row
