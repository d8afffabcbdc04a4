"""Updating a memory: the entry takes the new content, meta or language, its previous
version goes to its history, and a changed text is embedded again."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from apps.memory.choices import EmbeddingStatus
from apps.memory.models import MemoryEntry, MemoryEntryVersion
from apps.memory.services.embedding import memory_embedding_enqueue
from apps.memory.services.store import memory_entry_clean
from apps.memory.services.threads import closing_connection
from daarion.infra.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed


def memory_update(
    *,
    entry_id: str,
    content: dict | None = None,
    meta: dict | None = None,
    lang: str | None = None,
    expected_version: int | None = None,
    if_match: int | None = None,
) -> MemoryEntry:
    """Replaces an entry's content and/or meta, keeping the previous version in its history,
    and re-embeds it. Updates of one entry are serialized by a row lock, so none is lost;
    `expected_version` (409 `version_conflict`) or `if_match` (412) refuse an update made
    against a version that is no longer current.
    """
    if content is None and meta is None and lang is None:
        raise ValidationFailed.on_fields({"body": "give content, meta or lang to change"})
    with transaction.atomic():
        entry = MemoryEntry.objects.select_for_update().defer("embedding").filter(id=entry_id).first()
        if entry is None:
            raise NotFound(f"memory entry {entry_id!r} not found", type="memory_not_found")
        if expected_version is not None and expected_version != entry.version:
            raise Conflict(
                f"memory {entry_id!r} is at version {entry.version}, not {expected_version}",
                type="version_conflict",
                details={"version": entry.version},
            )
        if if_match is not None and if_match != entry.version:
            raise PreconditionFailed(
                f"memory {entry_id!r} is at version {entry.version}, not {if_match}", details={"version": entry.version}
            )
        fields = memory_entry_clean(
            {
                "agent_id": entry.agent_id,
                "microdao_id": entry.microdao_id,
                "channel_id": entry.channel_id,
                "kind": entry.kind,
                "content": entry.content if content is None else content,
                "meta": entry.meta if meta is None else meta,
                "occurred_at": entry.occurred_at,
                # A new text is detected again unless a language is given; meta alone keeps it.
                "lang": lang if lang is not None else (entry.lang if content is None else None),
            }
        )
        MemoryEntryVersion.objects.create(
            entry_id=entry.id,
            agent_id=entry.agent_id,
            version=entry.version,
            content=entry.content,
            text=entry.text,
            meta=entry.meta,
            lang=entry.lang,
            valid_from=entry.updated_at or entry.created_at,
        )
        text_changed = fields["text"] != entry.text
        entry.content, entry.text, entry.meta = fields["content"], fields["text"], fields["meta"]
        entry.lang, entry.lemmas = fields["lang"], fields["lemmas"]
        entry.version += 1
        entry.updated_at = timezone.now()
        update_fields = ["content", "text", "meta", "lang", "lemmas", "version", "updated_at"]
        if text_changed:
            # The old vector describes the old text: pending until the worker embeds the new one
            # (the entry is found by text meanwhile).
            entry.embedding, entry.embedding_model = None, ""
            entry.embedding_status, entry.embedding_error = EmbeddingStatus.PENDING, ""
            update_fields += ["embedding", "embedding_model", "embedding_status", "embedding_error"]
            memory_embedding_enqueue(entry_ids=[entry.id])
        entry.save(update_fields=update_fields)
    return entry


async def amemory_update(**kwargs: Any) -> MemoryEntry:
    return await sync_to_async(closing_connection(memory_update), thread_sensitive=False)(**kwargs)
