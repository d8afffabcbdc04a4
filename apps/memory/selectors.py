"""Reads of apps.memory: entries, jobs, transcripts, and the embedding-model snapshot."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.memory.choices import EmbeddingStatus
from apps.memory.embeddings import ModelSpec
from apps.memory.models import EmbeddingModel, MemoryEntry, MemoryEntryVersion, MemoryJob, Transcript
from daarion.infra.errors import NotFound, ValidationFailed
from daarion.infra.storable import to_utc
from daarion.infra.live_config import LiveSnapshot

logger = logging.getLogger(__name__)

EMBEDDING_MODELS_CONFIG = "memory.embedding_models"
FALLBACK_MODEL = "hash"


@dataclass(frozen=True)
class EmbeddingModels:
    by_name: dict[str, ModelSpec]
    active: str | None


def _load_models() -> EmbeddingModels:
    rows = list(EmbeddingModel.objects.all())
    by_name = {row.name: ModelSpec(row.name, row.backend, row.dimensions, dict(row.options or {})) for row in rows}
    active = next((row.name for row in rows if row.is_active), None)
    return EmbeddingModels(by_name, active)


_models = LiveSnapshot(EMBEDDING_MODELS_CONFIG, _load_models, max_age=30.0)


def invalidate_models() -> None:
    _models.invalidate()


def _usable(spec: ModelSpec) -> bool:
    if spec.backend == "local":
        from apps.memory.embeddings.local import is_available

        return is_available()
    return True


_warned: set[str] = set()


def active_model_spec() -> ModelSpec:
    """The model new entries and queries use. A `local` model on a machine without its
    packages falls back to `hash`, so a bare install still has vectors.
    """
    models = _models.get()
    spec = models.by_name.get(models.active or "") if models.active else None
    if spec is not None and _usable(spec):
        return spec
    if spec is not None and spec.name not in _warned:
        _warned.add(spec.name)
        logger.warning("embedding model %s is not usable here; falling back to %s", spec.name, FALLBACK_MODEL)
    fallback = models.by_name.get(FALLBACK_MODEL)
    if fallback is None:
        # Only reachable if an operator deleted the built-in row; keep serving regardless.
        return ModelSpec(FALLBACK_MODEL, "hash", 256)
    return fallback


def active_model_name_now() -> str | None:
    """The active model as the database says this instant (for long jobs, which must not
    act on a snapshot a moment old).
    """
    return EmbeddingModel.objects.filter(is_active=True).values_list("name", flat=True).first()


def model_spec(name: str) -> ModelSpec:
    spec = _models.get().by_name.get(name)
    if spec is None:
        # A model created a moment ago (maybe in this very transaction): read the table,
        # which holds a handful of rows, rather than answer 404.
        spec = _load_models().by_name.get(name)
    if spec is None:
        raise NotFound(f"embedding model {name!r} does not exist", type="embedding_model_not_found")
    return spec


def memory_entry_get(*, entry_id: str) -> MemoryEntry:
    entry = MemoryEntry.objects.filter(id=entry_id).defer("embedding").first()
    if entry is None:
        raise NotFound(f"memory entry {entry_id!r} not found", type="memory_not_found")
    return entry


def memory_entries(*, agent_id: str | None = None, channel_id: str | None = None) -> QuerySet[MemoryEntry]:
    qs = MemoryEntry.objects.defer("embedding")
    if agent_id is not None:
        qs = qs.filter(agent_id=agent_id)
    if channel_id is not None:
        qs = qs.filter(channel_id=channel_id)
    return qs


LIST_MAX_LIMIT = 200


def _bad(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", details=[{"path": path, "message": message}])


def cursor_encode(entry: MemoryEntry) -> str:
    raw = json.dumps([entry.occurred_at.isoformat(), entry.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, str]:
    """The (occurred_at, id) a page ended at; anything else is a 422 on `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, entry_id = json.loads(raw)
        if not isinstance(entry_id, str) or not isinstance(when, str):
            raise ValueError("not a cursor")
        return to_utc(datetime.fromisoformat(when)), entry_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _bad("cursor", "is not a cursor this API returned") from None


def _meta_value_q(key: str, value: Any) -> Q:
    q = Q(meta__contains={key: value})
    if isinstance(value, str):
        # From a query string every value is text: also match the JSON number, boolean or null.
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if parsed is None or isinstance(parsed, (bool, int, float)):
            q |= Q(meta__contains={key: parsed})
    return q


def memory_scope(
    *,
    agent_id: str,
    microdao_id: str | None = None,
    channel_id: str | None = None,
    kinds: Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[MemoryEntry]:
    """An agent's memories, narrowed to one microDAO, channel, kinds or time span where given
    (`since` inclusive, `until` exclusive): what a list, a forget and a summary read."""
    qs = MemoryEntry.objects.filter(agent_id=agent_id)
    if microdao_id is not None:
        qs = qs.filter(microdao_id=microdao_id)
    if channel_id is not None:
        qs = qs.filter(channel_id=channel_id)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    return qs


def memory_list(
    *,
    agent_id: str,
    microdao_id: str | None = None,
    channel_id: str | None = None,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    meta: dict[str, Any] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[MemoryEntry], str | None]:
    """One page of an agent's memories, newest first, and the cursor of the next page.

    Keyset pagination on (occurred_at, id): a page never repeats or skips an entry when
    entries are added meanwhile, and each page is one step on the (agent_id, occurred_at)
    index however deep it is.
    """
    if not isinstance(limit, int) or not 1 <= limit <= LIST_MAX_LIMIT:
        raise _bad("limit", f"must be between 1 and {LIST_MAX_LIMIT}")
    if since is not None and until is not None and since >= until:
        raise _bad("since", "must be before until")
    qs = memory_scope(
        agent_id=agent_id, microdao_id=microdao_id, channel_id=channel_id, kinds=kinds, since=since, until=until
    ).defer("embedding", "search", "lemmas")
    for key, value in (meta or {}).items():
        qs = qs.filter(_meta_value_q(key, value))
    if cursor:
        when, entry_id = cursor_decode(cursor)
        qs = qs.filter(Q(occurred_at__lt=when) | Q(occurred_at=when, id__lt=entry_id))
    rows = list(qs.order_by("-occurred_at", "-id")[: limit + 1])
    next_cursor = cursor_encode(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def memory_history(*, entry: MemoryEntry) -> list[MemoryEntryVersion]:
    """The entry's earlier versions, oldest first (the current one is the entry itself)."""
    return list(MemoryEntryVersion.objects.filter(entry_id=entry.id).order_by("version"))


def embedding_status_counts() -> list[Mapping[str, Any]]:
    """Entries per (embedding model, status): what the admin shows and `reembed` watches."""
    return list(
        MemoryEntry.objects.values("embedding_model", "embedding_status")
        .annotate(count=Count("id"))
        .order_by("embedding_model", "embedding_status")
    )


def memory_job_get(*, job_id: str) -> MemoryJob:
    job = MemoryJob.objects.filter(id=job_id).first()
    if job is None:
        raise NotFound(f"job {job_id!r} not found", type="job_not_found")
    return job


def transcript_get(*, session_id: str) -> Transcript:
    transcript = Transcript.objects.filter(session_id=session_id).first()
    if transcript is None:
        raise NotFound(f"transcript {session_id!r} not found", type="transcript_not_found")
    return transcript


def backlog_metrics() -> Iterable[Any]:
    """Scrape-time gauges (daarion.observability.metrics): the embedding backlog, the age of
    its oldest entry, and memory jobs by status."""
    from django.db import connection
    from django.db.models import Min
    from django.utils import timezone
    from prometheus_client.core import GaugeMetricFamily

    try:
        pending = MemoryEntry.objects.filter(embedding_status=EmbeddingStatus.PENDING).aggregate(
            n=Count("id"), oldest=Min("created_at")
        )
        jobs = list(MemoryJob.objects.values_list("status").annotate(n=Count("id")).order_by())
    finally:
        connection.close()  # called from a scrape, outside any request's connection handling
    lag = (timezone.now() - pending["oldest"]).total_seconds() if pending["oldest"] else 0.0
    yield GaugeMetricFamily("daarion_embedding_queue_depth", "Memory entries waiting for their embedding.", value=pending["n"])
    yield GaugeMetricFamily(
        "daarion_embedding_lag_seconds",
        "Age of the oldest memory entry still waiting for its embedding (0: none waits).",
        value=max(0.0, lag),
    )
    gauge = GaugeMetricFamily("daarion_memory_jobs", "Memory jobs (summaries, re-embeds) by status.", labels=["status"])
    for status, count in jobs:
        gauge.add_metric([status], count)
    yield gauge
