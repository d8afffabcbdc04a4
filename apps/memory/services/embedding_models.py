"""The embedding models: saving one (with its HNSW index), the built-in ones, which one is
active, deleting one; every change bumps the models' live configuration."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.memory import selectors
from apps.memory.choices import EmbeddingBackend
from apps.memory.models import EmbeddingModel, MemoryEntry
from apps.memory.vector_index import ensure_index
from daarion.infra.errors import Conflict, NotFound, ValidationFailed
from daarion.infra.live_config import bump_version
from daarion.infra.model_update import model_update

# What saving an existing model may change; its name is its identity.
EMBEDDING_MODEL_FIELDS = ("backend", "dimensions", "options")


def embedding_model_save(
    *, name: str, backend: str, dimensions: int, options: dict | None = None, is_active: bool | None = None
) -> EmbeddingModel:
    """Creates or updates an embedding model and makes sure its HNSW index exists."""
    if backend not in EmbeddingBackend.values:
        raise ValidationFailed.on_fields({"backend": f"must be one of {', '.join(EmbeddingBackend.values)}"})
    if backend == "llm" and not name.startswith("llm:"):
        raise ValidationFailed.on_fields({"name": "an LLM-proxy model is named llm:<logical model>"})
    if not 1 <= int(dimensions) <= 2000:
        # HNSW indexes vectors of up to 2,000 dimensions.
        raise ValidationFailed.on_fields({"dimensions": "must be between 1 and 2000"})
    with transaction.atomic():
        model, created = EmbeddingModel.objects.get_or_create(
            name=name, defaults={"backend": backend, "dimensions": dimensions, "options": options or {}}
        )
        if not created:
            if model.dimensions != dimensions and MemoryEntry.objects.filter(embedding_model=name).exists():
                raise Conflict(f"{name} already has embeddings of {model.dimensions} dimensions; create a new model instead")
            data: dict[str, Any] = {"backend": backend, "dimensions": dimensions}
            if options is not None:
                data["options"] = options
            model_update(instance=model, fields=EMBEDDING_MODEL_FIELDS, data=data)
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
        model_update(instance=model, fields=("is_active",), data={"is_active": True})
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
