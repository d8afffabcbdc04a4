"""Reads of apps.memory: entries, jobs, transcripts, and the embedding-model snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Count, QuerySet

from apps.memory.embeddings import ModelSpec
from apps.memory.models import EmbeddingModel, MemoryEntry, MemoryJob, Transcript
from daarion.errors import NotFound
from daarion.live_config import LiveSnapshot

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


def embedding_status_counts() -> list[dict]:
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
