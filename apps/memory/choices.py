"""Fixed vocabularies of the memory orchestrator."""

from django.db import models


class MemoryKind(models.TextChoices):
    CONVERSATION = "conversation", "Conversation"
    KB = "kb", "Knowledge base"
    TASK = "task", "Task"
    DAO_EVENT = "dao-event", "DAO event"
    SUMMARY = "summary", "Summary"


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class EmbeddingBackend(models.TextChoices):
    """How an embedding model computes vectors (see apps/memory/embeddings/)."""

    HASH = "hash", "Hash (lexical, dependency-free)"
    LOCAL = "local", "Local sentence-transformers (all-MiniLM-L6-v2)"
    LLM = "llm", "LLM proxy embedding model"


class JobKind(models.TextChoices):
    SUMMARIZE = "summarize", "Summarize"
    REEMBED = "reembed", "Re-embed"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
