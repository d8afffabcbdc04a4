"""Forgetting memories: one entry, or all of an agent's (optionally of one channel, microDAO
or kinds), each with the versions in its history."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from apps.memory import selectors
from apps.memory.models import MemoryEntry, MemoryEntryVersion
from daarion.infra.errors import ValidationFailed


def memory_delete(*, entry: MemoryEntry) -> None:
    with transaction.atomic():
        MemoryEntryVersion.objects.filter(entry_id=entry.id).delete()
        MemoryEntry.objects.filter(id=entry.id).delete()


def memory_forget(
    *, agent_id: str, channel_id: str | None = None, microdao_id: str | None = None, kinds: Iterable[str] | None = None
) -> int:
    """Deletes every memory of an agent (optionally of one channel / microDAO / kinds)."""
    if not agent_id:
        raise ValidationFailed.on_fields({"agent_id": "must be a non-empty string"})
    qs = selectors.memory_scope(agent_id=agent_id, microdao_id=microdao_id, channel_id=channel_id, kinds=kinds)
    with transaction.atomic():
        # Forgetting includes what an entry used to say.
        MemoryEntryVersion.objects.filter(agent_id=agent_id, entry_id__in=qs.values("id")).delete()
        deleted, _ = qs.delete()
    return deleted
