"""Storing memories: the checks of an entry's fields (one path for the store, the bulk store
and an update), its language, and the writes; each new entry is queued for embedding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.memory import language
from apps.memory.choices import MemoryKind
from apps.memory.models import MemoryEntry
from apps.memory.services.embedding import memory_embedding_enqueue
from apps.memory.services.threads import closing_connection
from apps.memory.text import derive_text
from daarion.infra.errors import Conflict, PayloadTooLarge, ValidationFailed
from daarion.infra.storable import json_problem, text_problem, to_utc
from daarion.observability.metrics import observe_memory_store

MAX_CONTENT_BYTES = settings.MEMORY_MAX_CONTENT_BYTES
MAX_META_BYTES = settings.MEMORY_MAX_META_BYTES
MAX_BULK_ITEMS = settings.MEMORY_MAX_BULK_ITEMS
_ID_FIELD_MAX = 128


def json_size(value: Any) -> int:
    """The bytes of `value` as compact JSON: what the size limits of entries and transcripts count."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def memory_entry_clean(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Checks one entry's fields and returns the model fields; raises 422/413 naming the path."""
    for field in ("agent_id", "microdao_id"):
        value = item.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ValidationFailed.on_fields({prefix + field: "must be a non-empty string"})
        if len(value) > _ID_FIELD_MAX:
            raise ValidationFailed.on_fields({prefix + field: f"must be at most {_ID_FIELD_MAX} characters"})
    for field in ("agent_id", "microdao_id", "channel_id", "idempotency_key"):
        value = item.get(field)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValidationFailed.on_fields({prefix + field: problem})
    for field in ("content", "meta"):
        found = json_problem(item.get(field), prefix + field)
        if found:
            raise ValidationFailed.on_fields(dict([found]))
    channel_id = item.get("channel_id")
    if channel_id is not None and (not isinstance(channel_id, str) or len(channel_id) > 256):
        raise ValidationFailed.on_fields({prefix + "channel_id": "must be a string of at most 256 characters"})
    kind = item.get("kind")
    if kind not in MemoryKind.values:
        raise ValidationFailed.on_fields({prefix + "kind": f"must be one of {', '.join(MemoryKind.values)}"})
    content = item.get("content")
    if not isinstance(content, dict) or not content:
        raise ValidationFailed.on_fields({prefix + "content": "must be a non-empty JSON object"})
    if json_size(content) > MAX_CONTENT_BYTES:
        raise _too_large(prefix + "content", MAX_CONTENT_BYTES)
    meta = item.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValidationFailed.on_fields({prefix + "meta": "must be a JSON object"})
    if json_size(meta) > MAX_META_BYTES:
        raise _too_large(prefix + "meta", MAX_META_BYTES)
    text = derive_text(kind, content)
    if not text:
        raise ValidationFailed.on_fields({prefix + "content": "holds no text to remember"})
    key = item.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > 200):
        raise ValidationFailed.on_fields({prefix + "idempotency_key": "must be a non-empty string of at most 200 characters"})
    lang = _clean_lang(item.get("lang"), prefix)
    occurred_at = item.get("occurred_at") or timezone.now()
    if not isinstance(occurred_at, datetime):
        raise ValidationFailed.on_fields({prefix + "occurred_at": "must be a datetime"})
    try:
        occurred_at = to_utc(occurred_at)
    except ValueError as exc:
        raise ValidationFailed.on_fields({prefix + "occurred_at": str(exc)}) from None
    return {
        "agent_id": item["agent_id"].strip(),
        "microdao_id": item["microdao_id"].strip(),
        "channel_id": channel_id or None,
        "kind": kind,
        "content": content,
        "text": text,
        "meta": meta,
        "occurred_at": occurred_at,
        "idempotency_key": key,
        **_language_fields(text, lang),
    }


def _too_large(path: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{path} is over {limit} bytes", details=[{"path": path, "message": f"at most {limit} bytes"}])


def _clean_lang(value: Any, prefix: str = "") -> str | None:
    if value is None or value == "":
        return None
    cleaned = language.clean_lang(value) if isinstance(value, str) else None
    if cleaned is None:
        raise ValidationFailed.on_fields({prefix + "lang": "must be an ISO 639-1 language code such as en or uk"})
    return cleaned


def _language_fields(text: str, lang: str | None) -> dict[str, str]:
    """The entry's language (the caller's, or detected) and the lemmas indexed with it."""
    lang = lang if lang is not None else language.detect(text)
    return {"lang": lang, "lemmas": language.lemmas(text, lang)}


def memory_store(
    *,
    agent_id: str,
    microdao_id: str,
    channel_id: str | None = None,
    kind: str,
    content: dict,
    meta: dict | None = None,
    idempotency_key: str | None = None,
    occurred_at: datetime | None = None,
    lang: str | None = None,
) -> tuple[MemoryEntry, bool]:
    """Stores one memory at once (no model call on the write path) and enqueues its
    embedding. A repeated idempotency key returns the first entry and `created=False`.
    `lang` (ISO 639-1) overrides the detected language.
    """
    fields = memory_entry_clean(
        {
            "agent_id": agent_id,
            "microdao_id": microdao_id,
            "channel_id": channel_id,
            "kind": kind,
            "content": content,
            "meta": meta,
            "idempotency_key": idempotency_key,
            "occurred_at": occurred_at,
            "lang": lang,
        }
    )
    if fields["idempotency_key"] is not None:
        existing = (
            MemoryEntry.objects.filter(agent_id=fields["agent_id"], idempotency_key=fields["idempotency_key"])
            .defer("embedding")
            .first()
        )
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            entry = MemoryEntry.objects.create(**fields)
            memory_embedding_enqueue(entry_ids=[entry.id])
        observe_memory_store(entry.kind)
    except IntegrityError:
        # A concurrent store with the same key won the race: answer with its entry.
        existing = (
            MemoryEntry.objects.filter(agent_id=fields["agent_id"], idempotency_key=fields["idempotency_key"])
            .defer("embedding")
            .first()
        )
        if existing is None:
            raise
        return existing, False
    return entry, True


def memory_store_bulk(*, items: Sequence[dict[str, Any]]) -> list[tuple[MemoryEntry, bool]]:
    """Stores many memories in one transaction (all or none); idempotency keys as for one."""
    if not items:
        raise ValidationFailed.on_fields({"items": "must not be empty"})
    if len(items) > MAX_BULK_ITEMS:
        raise ValidationFailed.on_fields({"items": f"at most {MAX_BULK_ITEMS} items per request"})
    cleaned = [memory_entry_clean(dict(item), prefix=f"items.{i}.") for i, item in enumerate(items)]
    seen: dict[tuple[str, str], int] = {}
    for i, fields in enumerate(cleaned):
        if fields["idempotency_key"] is None:
            continue
        pair = (fields["agent_id"], fields["idempotency_key"])
        if pair in seen:
            raise ValidationFailed.on_fields({f"items.{i}.idempotency_key": f"repeats items.{seen[pair]}"})
        seen[pair] = i
    results: list[tuple[MemoryEntry, bool]] = []
    with transaction.atomic():
        existing: dict[tuple[str, str | None], MemoryEntry] = {}
        if seen:
            for agent in {a for a, _ in seen}:
                keys = [k for a, k in seen if a == agent]
                for row in MemoryEntry.objects.filter(agent_id=agent, idempotency_key__in=keys).defer("embedding"):
                    existing[(agent, row.idempotency_key)] = row
        new_rows: list[MemoryEntry] = []
        for fields in cleaned:
            pair = (fields["agent_id"], fields["idempotency_key"])
            if fields["idempotency_key"] is not None and pair in existing:
                results.append((existing[pair], False))
                continue
            row = MemoryEntry(**fields)
            new_rows.append(row)
            results.append((row, True))
        try:
            with transaction.atomic():
                MemoryEntry.objects.bulk_create(new_rows)
        except IntegrityError as exc:
            raise Conflict(
                "a concurrent request stored one of these idempotency keys; retry the request", type="idempotency_conflict"
            ) from exc
        memory_embedding_enqueue(entry_ids=[row.id for row in new_rows])
    for kind in {row.kind for row in new_rows}:
        observe_memory_store(kind, sum(1 for row in new_rows if row.kind == kind))
    return results


async def amemory_store(**kwargs: Any) -> tuple[MemoryEntry, bool]:
    return await sync_to_async(closing_connection(memory_store), thread_sensitive=False)(**kwargs)


async def amemory_store_bulk(**kwargs: Any) -> list[tuple[MemoryEntry, bool]]:
    return await sync_to_async(closing_connection(memory_store_bulk), thread_sensitive=False)(**kwargs)
