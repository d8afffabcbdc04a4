"""Embedding backends: a registry filled by `@register` at import, read by generic code.

A backend turns texts into unit vectors of a fixed size. Adding one is a module with a class
and a decorator line, plus its import at the bottom of this file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class EmbeddingError(Exception):
    """An embedding could not be computed and retrying will not help (bad config, bad input)."""


class TransientEmbeddingError(EmbeddingError):
    """The embedding service is down or slow: retry later."""


class BackendUnavailable(EmbeddingError):
    """The backend's dependencies are not installed on this machine."""


@dataclass(frozen=True)
class ModelSpec:
    """What a backend needs to know about one configured embedding model."""

    name: str
    backend: str
    dimensions: int
    options: dict = field(default_factory=dict)


class Embedder(Protocol):
    """A backend class may set `slow = True` (a model on the CPU, a call over the network):
    a memory query then computes its embedding beside its SQL instead of before it."""

    spec: ModelSpec

    def embed(self, texts: Sequence[str], *, purpose: str = "document") -> list[list[float]]: ...


BACKENDS: dict[str, Callable[[ModelSpec], Embedder]] = {}
_instances: dict[str, Embedder] = {}
_lock = threading.Lock()


def register(name: str) -> Callable:
    def _decorate(factory: Callable[[ModelSpec], Embedder]) -> Callable[[ModelSpec], Embedder]:
        BACKENDS[name] = factory
        return factory

    return _decorate


def get_embedder(spec: ModelSpec) -> Embedder:
    """One instance per model spec per process (the local model loads its weights once)."""
    cache_key = json.dumps([spec.name, spec.backend, spec.dimensions, spec.options], sort_keys=True, default=str)
    embedder = _instances.get(cache_key)
    if embedder is not None:
        return embedder
    with _lock:
        embedder = _instances.get(cache_key)
        if embedder is None:
            factory = BACKENDS.get(spec.backend)
            if factory is None:
                raise EmbeddingError(f"unknown embedding backend {spec.backend!r}")
            embedder = factory(spec)
            _instances[cache_key] = embedder
    return embedder


def check_vectors(spec: ModelSpec, vectors: list[list[float]], expected: int) -> list[list[float]]:
    if len(vectors) != expected:
        raise EmbeddingError(f"{spec.name}: expected {expected} vectors, got {len(vectors)}")
    for vector in vectors:
        if len(vector) != spec.dimensions:
            raise EmbeddingError(f"{spec.name}: expected {spec.dimensions} dimensions, got {len(vector)}")
    return vectors


from apps.memory.embeddings import hashing, llm, local  # noqa: E402,F401  (fills BACKENDS)
