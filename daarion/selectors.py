"""Reads of the project-wide tables (the change log)."""

from __future__ import annotations

from django.db.models import QuerySet

from daarion.models import ChangeRecord


def change_records_for(*, object_type: str, object_id: str, limit: int = 200) -> QuerySet[ChangeRecord]:
    """The change log of one object, newest first: every door's writes (admin, API, import, CLI)."""
    return ChangeRecord.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("-created_at", "-id")[:limit]
