"""Models of apps.memory: memory entries with their embeddings, embedding models, jobs and
session transcripts.
"""

from __future__ import annotations

import secrets

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Case, Q, When
from django.db.models.expressions import CombinedExpression
from pgvector.django import VectorField

from apps.memory.choices import EmbeddingBackend, EmbeddingStatus, JobKind, JobStatus, MemoryKind

# The text search configuration of each language Postgres (16, core) has a stemmer for; an
# entry of another language is indexed with `simple` plus its lemmas (apps/memory/language.py),
# one of unknown language with `english`, as every entry was before languages were told apart.
FTS_CONFIGS = {
    "en": "english",
    "ru": "russian",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "fi": "finnish",
    "hu": "hungarian",
    "nb": "norwegian",
    "ro": "romanian",
    "tr": "turkish",
    "el": "greek",
    "lt": "lithuanian",
    "id": "indonesian",
    "ga": "irish",
    "ca": "catalan",
    "eu": "basque",
    "hy": "armenian",
    "hi": "hindi",
    "ne": "nepali",
    "sr": "serbian",
    "ta": "tamil",
    "ar": "arabic",
    "yi": "yiddish",
}
FTS_DEFAULT = "english"
FTS_LEMMAS = "simple"


def fts_config(lang: str) -> str:
    """The configuration an entry of `lang` is indexed with (and its query words parsed with)."""
    if not lang:
        return FTS_DEFAULT
    return FTS_CONFIGS.get(lang, "simple")


def _search_expression():
    # Constant configurations only: a generated column must be immutable, and a
    # `lang::regconfig` cast is not.
    by_lang = Case(
        *[When(lang=code, then=SearchVector("text", config=config)) for code, config in FTS_CONFIGS.items()],
        When(lang="", then=SearchVector("text", config=FTS_DEFAULT)),
        default=SearchVector("text", config="simple"),
        output_field=SearchVectorField(),
    )
    return CombinedExpression(by_lang, "||", SearchVector("lemmas", config=FTS_LEMMAS), output_field=SearchVectorField())


def new_memory_id() -> str:
    return f"mem-{secrets.token_hex(8)}"


def new_job_id() -> str:
    return f"job-{secrets.token_hex(8)}"


class EmbeddingModel(models.Model):
    """An embedding model operators can choose; exactly one is active (used for new writes
    and for queries). Each has its own partial HNSW index over the shared vector column.
    """

    name = models.CharField(max_length=120, unique=True, help_text="hash, local, or llm:<logical model>")
    backend = models.CharField(max_length=16, choices=EmbeddingBackend.choices)
    dimensions = models.PositiveIntegerField()
    is_active = models.BooleanField(default=False)
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="memory_one_active_embedding_model"),
            models.CheckConstraint(condition=Q(dimensions__gte=1) & Q(dimensions__lte=4000), name="memory_embedding_dims_range"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def index_name(self) -> str:
        return f"memory_entry_hnsw_{self.pk}"


class MemoryEntry(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_memory_id, editable=False)
    agent_id = models.CharField(max_length=128)
    microdao_id = models.CharField(max_length=128)
    channel_id = models.CharField(max_length=256, null=True, blank=True)
    kind = models.CharField(max_length=16, choices=MemoryKind.choices)
    content = models.JSONField(help_text="the content as it was stored")
    text = models.TextField(help_text="searchable text derived from the content")
    meta = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    lang = models.CharField(
        max_length=8, blank=True, default="", help_text="ISO 639-1 code, detected or given; empty when unknown"
    )
    lemmas = models.TextField(blank=True, default="", help_text="dictionary forms of words whose language Postgres cannot stem")
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(null=True, blank=True)
    # Generated, so the full-text index can never drift from `text`, `lang` and `lemmas`.
    search = models.GeneratedField(
        expression=_search_expression(),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    # Dimension-less: models of different sizes share the column, each with a partial index.
    embedding = VectorField(null=True, blank=True)
    embedding_model = models.CharField(max_length=120, blank=True, default="")
    embedding_status = models.CharField(max_length=8, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING)
    embedding_error = models.TextField(blank=True, default="")
    embedded_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name_plural = "memory entries"
        constraints = [
            models.UniqueConstraint(
                fields=["agent_id", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="memory_idempotency_key_per_agent",
            ),
            models.CheckConstraint(condition=Q(kind__in=MemoryKind.values), name="memory_entry_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["agent_id", "occurred_at"], name="memory_entry_agent_time"),
            # With id last, "the turn just before/after" is a single index step (see search.py).
            models.Index(fields=["agent_id", "channel_id", "occurred_at", "id"], name="memory_entry_agent_channel_t"),
            models.Index(fields=["embedding_status", "created_at"], name="memory_entry_status"),
            GinIndex(fields=["search"], name="memory_entry_fts"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.agent_id}, {self.kind})"


class MemoryEntryVersion(models.Model):
    """A memory entry as it was before an update: `GET /{id}/history`.

    `entry_id` is a plain column, not a foreign key: forgetting thousands of entries stays one
    DELETE each for the entries and their versions (a foreign key would make Django fetch
    every entry to cascade).
    """

    entry_id = models.CharField(max_length=40)
    agent_id = models.CharField(max_length=128)
    version = models.PositiveIntegerField()
    content = models.JSONField()
    text = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    lang = models.CharField(max_length=8, blank=True, default="")
    valid_from = models.DateTimeField(help_text="when this version was stored")
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["entry_id", "version"]
        constraints = [models.UniqueConstraint(fields=["entry_id", "version"], name="memory_version_unique")]

    def __str__(self) -> str:
        return f"{self.entry_id} v{self.version}"


class MemoryJob(models.Model):
    """A background job a caller can poll: a summary, a re-embed."""

    id = models.CharField(primary_key=True, max_length=40, default=new_job_id, editable=False)
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    agent_id = models.CharField(max_length=128, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.kind}, {self.status})"


class Transcript(models.Model):
    """One session's transcript: JSONL entries linked by uuid/parentUuid, bookkeeping stripped."""

    session_id = models.CharField(primary_key=True, max_length=128)
    agent_id = models.CharField(max_length=128)
    version = models.PositiveIntegerField(default=1)
    entries = models.JSONField(default=list)
    entry_count = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["agent_id", "updated_at"], name="memory_transcript_agent")]

    def __str__(self) -> str:
        return self.session_id
