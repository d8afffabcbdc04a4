"""Writes of apps.memory: storing and forgetting memories, embedding them, embedding-model
choice, jobs, and session transcripts.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.memory import language, selectors
from apps.memory.choices import EmbeddingStatus, JobKind, JobStatus, MemoryKind
from apps.memory.embeddings import EmbeddingError, ModelSpec, TransientEmbeddingError, get_embedder
from apps.memory.enqueue import enqueue_embed_entries, enqueue_reembed
from apps.memory.models import EmbeddingModel, MemoryEntry, MemoryEntryVersion, MemoryJob, Transcript
from apps.memory.text import derive_text
from apps.memory.vector_index import ensure_index
from daarion.infra.errors import Conflict, NotFound, PayloadTooLarge, PreconditionFailed, ValidationFailed
from daarion.infra.live_config import bump_version
from daarion.observability.metrics import observe_embedded, observe_memory_store
from daarion.infra.storable import json_problem, text_problem, to_utc

logger = logging.getLogger(__name__)

MAX_CONTENT_BYTES = settings.MEMORY_MAX_CONTENT_BYTES
MAX_META_BYTES = settings.MEMORY_MAX_META_BYTES
MAX_BULK_ITEMS = settings.MEMORY_MAX_BULK_ITEMS
EMBED_BATCH = settings.MEMORY_EMBED_BATCH
_ID_FIELD_MAX = 128


# --- storing -------------------------------------------------------------------------------


def _invalid(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _clean_item(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Checks one entry's fields and returns the model fields; raises 422/413 naming the path."""
    for field in ("agent_id", "microdao_id"):
        value = item.get(field)
        if not isinstance(value, str) or not value.strip():
            raise _invalid(prefix + field, "must be a non-empty string")
        if len(value) > _ID_FIELD_MAX:
            raise _invalid(prefix + field, f"must be at most {_ID_FIELD_MAX} characters")
    for field in ("agent_id", "microdao_id", "channel_id", "idempotency_key"):
        value = item.get(field)
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise _invalid(prefix + field, problem)
    for field in ("content", "meta"):
        found = json_problem(item.get(field), prefix + field)
        if found:
            raise _invalid(*found)
    channel_id = item.get("channel_id")
    if channel_id is not None and (not isinstance(channel_id, str) or len(channel_id) > 256):
        raise _invalid(prefix + "channel_id", "must be a string of at most 256 characters")
    kind = item.get("kind")
    if kind not in MemoryKind.values:
        raise _invalid(prefix + "kind", f"must be one of {', '.join(MemoryKind.values)}")
    content = item.get("content")
    if not isinstance(content, dict) or not content:
        raise _invalid(prefix + "content", "must be a non-empty JSON object")
    if _json_size(content) > MAX_CONTENT_BYTES:
        raise PayloadTooLarge(
            f"{prefix}content is over {MAX_CONTENT_BYTES} bytes",
            details=[{"path": prefix + "content", "message": f"at most {MAX_CONTENT_BYTES} bytes"}],
        )
    meta = item.get("meta") or {}
    if not isinstance(meta, dict):
        raise _invalid(prefix + "meta", "must be a JSON object")
    if _json_size(meta) > MAX_META_BYTES:
        raise PayloadTooLarge(
            f"{prefix}meta is over {MAX_META_BYTES} bytes",
            details=[{"path": prefix + "meta", "message": f"at most {MAX_META_BYTES} bytes"}],
        )
    text = derive_text(kind, content)
    if not text:
        raise _invalid(prefix + "content", "holds no text to remember")
    key = item.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > 200):
        raise _invalid(prefix + "idempotency_key", "must be a non-empty string of at most 200 characters")
    lang = _clean_lang(item.get("lang"), prefix)
    occurred_at = item.get("occurred_at") or timezone.now()
    if not isinstance(occurred_at, datetime):
        raise _invalid(prefix + "occurred_at", "must be a datetime")
    try:
        occurred_at = to_utc(occurred_at)
    except ValueError as exc:
        raise _invalid(prefix + "occurred_at", str(exc)) from None
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


def _clean_lang(value: Any, prefix: str = "") -> str | None:
    if value is None or value == "":
        return None
    cleaned = language.clean_lang(value) if isinstance(value, str) else None
    if cleaned is None:
        raise _invalid(prefix + "lang", "must be an ISO 639-1 language code such as en or uk")
    return cleaned


def _language_fields(text: str, lang: str | None) -> dict[str, str]:
    """The entry's language (the caller's, or detected) and the lemmas indexed with it."""
    lang = lang if lang is not None else language.detect(text)
    return {"lang": lang, "lemmas": language.lemmas(text, lang)}


def _enqueue_embedding(entry_ids: list[str]) -> None:
    """After commit, hand the ids to the embeddings queue. A broker outage only delays the
    embedding: the entries stay `pending` and the periodic requeue picks them up.
    """
    if not entry_ids:
        return

    def _send() -> None:
        for start in range(0, len(entry_ids), EMBED_BATCH):
            try:
                enqueue_embed_entries(entry_ids[start : start + EMBED_BATCH], retry=False)
            except Exception:  # noqa: BLE001 - the entries are safe; requeue_pending retries
                logger.warning("could not enqueue embeddings; they stay pending", exc_info=True)
                return

    transaction.on_commit(_send)


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
    fields = _clean_item(
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
            _enqueue_embedding([entry.id])
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
        raise _invalid("items", "must not be empty")
    if len(items) > MAX_BULK_ITEMS:
        raise _invalid("items", f"at most {MAX_BULK_ITEMS} items per request")
    cleaned = [_clean_item(dict(item), prefix=f"items.{i}.") for i, item in enumerate(items)]
    seen: dict[tuple[str, str], int] = {}
    for i, fields in enumerate(cleaned):
        if fields["idempotency_key"] is None:
            continue
        pair = (fields["agent_id"], fields["idempotency_key"])
        if pair in seen:
            raise _invalid(f"items.{i}.idempotency_key", f"repeats items.{seen[pair]}")
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
        _enqueue_embedding([row.id for row in new_rows])
    for kind in {row.kind for row in new_rows}:
        observe_memory_store(kind, sum(1 for row in new_rows if row.kind == kind))
    return results


async def amemory_store(**kwargs: Any) -> tuple[MemoryEntry, bool]:
    return await sync_to_async(closing_connection(memory_store), thread_sensitive=False)(**kwargs)


async def amemory_store_bulk(**kwargs: Any) -> list[tuple[MemoryEntry, bool]]:
    return await sync_to_async(closing_connection(memory_store_bulk), thread_sensitive=False)(**kwargs)


def closing_connection(fn):
    """Runs `fn` in a worker thread and gives its connection back (to the pool) afterwards;
    Django only closes connections of the request thread on its own.
    """

    def _run(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return _run


# --- forgetting ----------------------------------------------------------------------------


def memory_delete(*, entry: MemoryEntry) -> None:
    with transaction.atomic():
        MemoryEntryVersion.objects.filter(entry_id=entry.id).delete()
        MemoryEntry.objects.filter(id=entry.id).delete()


def memory_forget(
    *, agent_id: str, channel_id: str | None = None, microdao_id: str | None = None, kinds: Iterable[str] | None = None
) -> int:
    """Deletes every memory of an agent (optionally of one channel / microDAO / kinds)."""
    if not agent_id:
        raise _invalid("agent_id", "must be a non-empty string")
    qs = MemoryEntry.objects.filter(agent_id=agent_id)
    if channel_id is not None:
        qs = qs.filter(channel_id=channel_id)
    if microdao_id is not None:
        qs = qs.filter(microdao_id=microdao_id)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    with transaction.atomic():
        # Forgetting includes what an entry used to say.
        MemoryEntryVersion.objects.filter(agent_id=agent_id, entry_id__in=qs.values("id")).delete()
        deleted, _ = qs.delete()
    return deleted


# --- updating ------------------------------------------------------------------------------


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
        raise _invalid("body", "give content, meta or lang to change")
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
        fields = _clean_item(
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
            _enqueue_embedding([entry.id])
        entry.save(update_fields=update_fields)
    return entry


async def amemory_update(**kwargs: Any) -> MemoryEntry:
    return await sync_to_async(closing_connection(memory_update), thread_sensitive=False)(**kwargs)


# --- embedding -----------------------------------------------------------------------------


def _embed_and_save(spec: ModelSpec, entries: list[MemoryEntry]) -> int:
    vectors = get_embedder(spec).embed([e.text for e in entries], purpose="document")
    if len(vectors) != len(entries) or any(len(v) != spec.dimensions for v in vectors):
        raise EmbeddingError(f"{spec.name} returned vectors of the wrong shape (expected {spec.dimensions} dimensions)")
    now = timezone.now()
    with transaction.atomic():
        # An update may have changed a text while the model ran: its vector would describe
        # the old text. Such entries are skipped; the update queued their embedding again.
        current = dict(MemoryEntry.objects.select_for_update().filter(id__in=[e.id for e in entries]).values_list("id", "text"))
        kept = []
        for entry, vector in zip(entries, vectors):
            if current.get(entry.id) != entry.text:
                continue
            entry.embedding = vector
            entry.embedding_model = spec.name
            entry.embedding_status = EmbeddingStatus.READY
            entry.embedding_error = ""
            entry.embedded_at = now
            kept.append(entry)
        MemoryEntry.objects.bulk_update(
            kept, ["embedding", "embedding_model", "embedding_status", "embedding_error", "embedded_at"]
        )
    observe_embedded("ready", len(kept))
    return len(kept)


def memory_embed_entries(*, entry_ids: Sequence[str], spec: ModelSpec | None = None) -> dict[str, int]:
    """Embeds the given entries with the active model, skipping those already done
    (so a task that runs twice does no harm). Transient errors propagate for the task to
    retry; permanent ones mark the entry `failed` with the reason.
    """
    spec = spec or selectors.active_model_spec()
    entries = [
        e
        for e in MemoryEntry.objects.filter(id__in=list(entry_ids)).only("id", "text", "embedding_model", "embedding_status")
        if not (e.embedding_status == EmbeddingStatus.READY and e.embedding_model == spec.name)
    ]
    if not entries:
        return {"embedded": 0, "failed": 0}
    try:
        return {"embedded": _embed_and_save(spec, entries), "failed": 0}
    except TransientEmbeddingError:
        raise
    except EmbeddingError as exc:
        if len(entries) == 1:
            memory_mark_failed(entry_ids=[entries[0].id], reason=str(exc))
            return {"embedded": 0, "failed": 1}
    # One bad entry must not fail its batch: try each alone.
    done = failed = 0
    for entry in entries:
        try:
            done += _embed_and_save(spec, [entry])
        except TransientEmbeddingError:
            raise
        except EmbeddingError as exc:
            memory_mark_failed(entry_ids=[entry.id], reason=str(exc))
            failed += 1
    return {"embedded": done, "failed": failed}


def memory_mark_failed(*, entry_ids: Sequence[str], reason: str) -> int:
    failed = (
        MemoryEntry.objects.filter(id__in=list(entry_ids))
        .exclude(embedding_status=EmbeddingStatus.READY)
        .update(embedding_status=EmbeddingStatus.FAILED, embedding_error=reason[:2000])
    )
    observe_embedded("failed", failed)
    return failed


def memory_pending_ids(*, older_than_seconds: float, limit: int) -> list[str]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        MemoryEntry.objects.filter(embedding_status=EmbeddingStatus.PENDING, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )


def memory_requeue_pending(*, older_than_seconds: float = 30.0, limit: int = 5000) -> int:
    """Re-enqueues entries still `pending` (their task was lost: broker down, worker killed)."""
    ids = memory_pending_ids(older_than_seconds=older_than_seconds, limit=limit)
    for start in range(0, len(ids), EMBED_BATCH):
        enqueue_embed_entries(ids[start : start + EMBED_BATCH])
    return len(ids)


def memory_retry_failed(*, entry_ids: Sequence[str]) -> int:
    """Puts failed (or any) entries back to `pending` and enqueues them (admin action)."""
    ids = list(entry_ids)
    with transaction.atomic():
        count = MemoryEntry.objects.filter(id__in=ids).update(embedding_status=EmbeddingStatus.PENDING, embedding_error="")
        _enqueue_embedding(ids)
    return count


# --- embedding models ----------------------------------------------------------------------


def embedding_model_save(
    *, name: str, backend: str, dimensions: int, options: dict | None = None, is_active: bool | None = None
) -> EmbeddingModel:
    """Creates or updates an embedding model and makes sure its HNSW index exists."""
    from apps.memory.choices import EmbeddingBackend

    if backend not in EmbeddingBackend.values:
        raise _invalid("backend", f"must be one of {', '.join(EmbeddingBackend.values)}")
    if backend == "llm" and not name.startswith("llm:"):
        raise _invalid("name", "an LLM-proxy model is named llm:<logical model>")
    if not 1 <= int(dimensions) <= 2000:
        # HNSW indexes vectors of up to 2,000 dimensions.
        raise _invalid("dimensions", "must be between 1 and 2000")
    with transaction.atomic():
        model, created = EmbeddingModel.objects.get_or_create(
            name=name, defaults={"backend": backend, "dimensions": dimensions, "options": options or {}}
        )
        if not created:
            if model.dimensions != dimensions and MemoryEntry.objects.filter(embedding_model=name).exists():
                raise Conflict(f"{name} already has embeddings of {model.dimensions} dimensions; create a new model instead")
            model.backend, model.dimensions, model.options = (
                backend,
                dimensions,
                options if options is not None else model.options,
            )
            model.save()
        bump_version(selectors.EMBEDDING_MODELS_CONFIG)
    ensure_index(name, dimensions)
    if is_active:
        embedding_model_activate(name=name)
        model.refresh_from_db()
    return model


BUILTIN_MODELS = (("hash", "hash", 256), ("local", "local", 384))


def embedding_models_ensure_builtin() -> None:
    """The built-in models exist (the migration makes them; a flushed test database or an
    operator's delete may not have them), with `hash` active when no model is.
    """
    for name, backend, dims in BUILTIN_MODELS:
        EmbeddingModel.objects.get_or_create(name=name, defaults={"backend": backend, "dimensions": dims})
        ensure_index(name, dims)
    if not EmbeddingModel.objects.filter(is_active=True).exists():
        EmbeddingModel.objects.filter(name="hash").update(is_active=True)
    bump_version(selectors.EMBEDDING_MODELS_CONFIG)


def embedding_model_activate(*, name: str) -> EmbeddingModel:
    """Makes `name` the model for new writes and queries. Existing entries keep their old
    vectors (still found by text) until `reembed` moves them over.
    """
    with transaction.atomic():
        model = EmbeddingModel.objects.select_for_update().filter(name=name).first()
        if model is None:
            raise NotFound(f"embedding model {name!r} does not exist", type="embedding_model_not_found")
        EmbeddingModel.objects.exclude(pk=model.pk).filter(is_active=True).update(is_active=False)
        if not model.is_active:
            model.is_active = True
            model.save(update_fields=["is_active", "updated_at"])
        bump_version(selectors.EMBEDDING_MODELS_CONFIG)
    return model


def embedding_model_delete(*, name: str) -> None:
    """Deletes a model that is not active (the admin's rule, for the registry API too).
    Entries embedded with it keep their vectors (found by text) until re-embedded."""
    with transaction.atomic():
        model = EmbeddingModel.objects.select_for_update().filter(name=name).first()
        if model is None:
            raise NotFound(f"embedding model {name!r} does not exist", type="embedding_model_not_found")
        if model.is_active:
            raise Conflict(f"{name} is the active embedding model; activate another first", details={"name": name})
        model.delete()
        bump_version(selectors.EMBEDDING_MODELS_CONFIG)


def memory_ids_needing_model(*, model_name: str, limit: int, after_id: str = "") -> list[str]:
    return list(
        MemoryEntry.objects.filter(id__gt=after_id)
        .exclude(embedding_model=model_name, embedding_status=EmbeddingStatus.READY)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def reembed_start(*, model_name: str, enqueue: bool = True) -> MemoryJob:
    """Activates `model_name` and creates a job that moves every entry onto it, run by the
    worker (`enqueue`) or by the caller through `reembed_run`.
    """
    embedding_model_activate(name=model_name)
    with transaction.atomic():
        total = MemoryEntry.objects.exclude(embedding_model=model_name, embedding_status=EmbeddingStatus.READY).count()
        job = MemoryJob.objects.create(
            kind=JobKind.REEMBED, params={"model": model_name}, result={"done": 0, "failed": 0, "total": total}
        )
        job_id = job.id
        if not enqueue:
            return job

        transaction.on_commit(lambda: enqueue_reembed(job_id))
    return job


def reembed_run(*, job_id: str, budget_batches: int | None = None) -> MemoryJob:
    """Re-embeds in batches until done (or `budget_batches` ran), recording progress on the
    job. Stops early if another model was activated meanwhile.
    """
    job = selectors.memory_job_get(job_id=job_id)
    model_name = job.params["model"]
    spec = selectors.model_spec(model_name)
    total = int((job.result or {}).get("total", 0))
    MemoryJob.objects.filter(id=job_id).update(status=JobStatus.RUNNING, updated_at=timezone.now())
    done = int((job.result or {}).get("done", 0))
    failed = int((job.result or {}).get("failed", 0))
    after = str((job.result or {}).get("cursor", ""))
    batches = 0
    while budget_batches is None or batches < budget_batches:
        if selectors.active_model_name_now() != model_name:
            return _job_finish(
                job_id,
                JobStatus.FAILED,
                {"done": done, "failed": failed, "total": total},
                f"{model_name} is no longer the active model",
            )
        ids = memory_ids_needing_model(model_name=model_name, limit=EMBED_BATCH, after_id=after)
        if not ids:
            return _job_finish(job_id, JobStatus.SUCCEEDED, {"done": done, "failed": failed, "total": total}, "")
        counts = memory_embed_entries(entry_ids=ids, spec=spec)
        done += counts["embedded"]
        failed += counts["failed"]
        after = ids[-1]
        batches += 1
        MemoryJob.objects.filter(id=job_id).update(
            result={"done": done, "failed": failed, "total": total, "cursor": after}, updated_at=timezone.now()
        )
    return selectors.memory_job_get(job_id=job_id)


def _job_finish(job_id: str, status: str, result: dict | None, error: str) -> MemoryJob:
    MemoryJob.objects.filter(id=job_id).update(
        status=status, result=result, error=error[:4000], finished_at=timezone.now(), updated_at=timezone.now()
    )
    return selectors.memory_job_get(job_id=job_id)


def memory_job_fail(*, job_id: str, error: str) -> MemoryJob:
    job = selectors.memory_job_get(job_id=job_id)
    return _job_finish(job_id, JobStatus.FAILED, job.result or {}, error)


# --- transcripts ---------------------------------------------------------------------------

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Entries that record the tool's own bookkeeping, not the conversation.
BOOKKEEPING_TYPES = frozenset({"progress", "file-history-snapshot", "snapshot", "queue-operation", "summary", "pr-link"})
TRANSCRIPT_MAX_ENTRIES = settings.MEMORY_TRANSCRIPT_MAX_ENTRIES
TRANSCRIPT_MAX_BYTES = settings.MEMORY_TRANSCRIPT_MAX_BYTES
TRANSCRIPT_MAX_ENTRY_BYTES = settings.MEMORY_TRANSCRIPT_MAX_ENTRY_BYTES


def session_id_clean(session_id: str) -> str:
    """Only a plain token may name a session: no path separators, no `..`, no control bytes."""
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id) or ".." in session_id:
        raise _invalid(
            "session_id",
            "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', not starting with a symbol and without '..'",
        )
    return session_id


def transcript_parse_jsonl(raw: bytes | str) -> list[dict]:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    entries: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _invalid(f"line {number}", f"not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise _invalid(f"line {number}", "must be a JSON object")
        entries.append(value)
    return entries


def transcript_clean(entries: Sequence[dict]) -> tuple[list[dict], int]:
    """Validates entries, strips bookkeeping and re-parents their children to the nearest
    kept ancestor. Returns (kept entries, number stripped).
    """
    if len(entries) > TRANSCRIPT_MAX_ENTRIES:
        raise PayloadTooLarge(f"a transcript holds at most {TRANSCRIPT_MAX_ENTRIES} entries")
    parents: dict[str, str | None] = {}
    stripped_ids: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _invalid(f"entries.{i}", "must be a JSON object")
        kind = entry.get("type")
        if not isinstance(kind, str) or not kind:
            raise _invalid(f"entries.{i}.type", "must be a non-empty string")
        uid = entry.get("uuid")
        if uid is not None:
            if not isinstance(uid, str) or not uid:
                raise _invalid(f"entries.{i}.uuid", "must be a non-empty string")
            if uid in parents:
                raise _invalid(f"entries.{i}.uuid", f"repeats an earlier entry's uuid {uid!r}")
            parent = entry.get("parentUuid")
            if parent is not None and not isinstance(parent, str):
                raise _invalid(f"entries.{i}.parentUuid", "must be a string or null")
            parents[uid] = parent
            if kind in BOOKKEEPING_TYPES:
                stripped_ids.add(uid)
        found = json_problem(entry, f"entries.{i}")
        if found:
            raise _invalid(*found)
        if _json_size(entry) > TRANSCRIPT_MAX_ENTRY_BYTES:
            raise PayloadTooLarge(f"entries.{i} is over {TRANSCRIPT_MAX_ENTRY_BYTES} bytes")

    def kept_ancestor(parent: str | None) -> str | None:
        seen: set[str] = set()
        while parent is not None and parent in stripped_ids:
            if parent in seen:  # a cycle of bookkeeping entries: cut it
                return None
            seen.add(parent)
            parent = parents.get(parent)
        return parent

    kept: list[dict] = []
    for entry in entries:
        if entry["type"] in BOOKKEEPING_TYPES:
            continue
        parent = entry.get("parentUuid")
        if parent is not None and parent in stripped_ids:
            entry = {**entry, "parentUuid": kept_ancestor(parent)}
        kept.append(entry)
    types = {entry["type"] for entry in kept}
    missing = [t for t in ("user", "assistant") if t not in types]
    if missing:
        raise _invalid("entries", f"a transcript needs at least one user and one assistant entry (missing: {', '.join(missing)})")
    if _json_size(kept) > TRANSCRIPT_MAX_BYTES:
        raise PayloadTooLarge(f"a transcript is at most {TRANSCRIPT_MAX_BYTES} bytes")
    return kept, len(entries) - len(kept)


def transcript_put(
    *, session_id: str, agent_id: str, entries: Sequence[dict], if_match: int | None = None
) -> tuple[Transcript, bool, int]:
    """Replaces a session's transcript. With `if_match` the stored version must equal it
    (412 otherwise); without it, a transcript shorter than the stored one is refused (409),
    so a slow writer never overwrites a newer turn. Returns (transcript, created, stripped).
    """
    session_id = session_id_clean(session_id)
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise _invalid("agent_id", "must be a non-empty string")
    if problem := text_problem(agent_id):
        raise _invalid("agent_id", problem)
    kept, stripped = transcript_clean(entries)
    with transaction.atomic():
        current = Transcript.objects.select_for_update().filter(session_id=session_id).first()
        if current is None:
            if if_match not in (None, 0):
                raise PreconditionFailed(f"transcript {session_id!r} does not exist (version 0)", details={"version": 0})
            transcript = Transcript.objects.create(
                session_id=session_id,
                agent_id=agent_id,
                version=1,
                entries=kept,
                entry_count=len(kept),
                size_bytes=_json_size(kept),
            )
            return transcript, True, stripped
        if current.agent_id != agent_id:
            raise Conflict(f"session {session_id!r} belongs to another agent", type="session_agent_mismatch")
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed(
                f"transcript {session_id!r} is at version {current.version}, not {if_match}",
                details={"version": current.version},
            )
        if if_match is None and len(kept) < current.entry_count:
            raise Conflict(
                f"the upload has {len(kept)} entries, fewer than the stored {current.entry_count}; send If-Match to replace it",
                type="transcript_shorter",
                details={"version": current.version, "entry_count": current.entry_count},
            )
        current.entries = kept
        current.entry_count = len(kept)
        current.size_bytes = _json_size(kept)
        current.version += 1
        current.save()
        return current, False, stripped


def transcript_append(*, session_id: str, agent_id: str, entries: list[dict]) -> Transcript:
    """Appends entries to a session's transcript (creating it); the whole is validated."""
    session_id = session_id_clean(session_id)
    with transaction.atomic():
        current = Transcript.objects.select_for_update().filter(session_id=session_id).first()
        if current is None:
            transcript, _, _ = transcript_put(session_id=session_id, agent_id=agent_id, entries=entries)
            return transcript
        if current.agent_id != agent_id:
            raise Conflict(f"session {session_id!r} belongs to another agent", type="session_agent_mismatch")
        kept, _ = transcript_clean([*current.entries, *entries])
        current.entries = kept
        current.entry_count = len(kept)
        current.size_bytes = _json_size(kept)
        current.version += 1
        current.save()
        return current


def transcript_delete(*, session_id: str) -> None:
    Transcript.objects.filter(session_id=session_id_clean(session_id)).delete()
