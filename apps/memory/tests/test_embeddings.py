"""Embedding backends: the hash model's properties, the local model when installed."""

import math

import pytest

from apps.memory.embeddings import ModelSpec, get_embedder
from apps.memory.embeddings.local import is_available

HASH = ModelSpec("hash", "hash", 256)


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_hash_vectors_are_deterministic_unit_vectors():
    embedder = get_embedder(HASH)
    first, second = embedder.embed(["The budget vote passed", "The budget vote passed"])
    assert first == second
    assert len(first) == 256
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0, rel_tol=1e-6)


def test_hash_similarity_follows_shared_words():
    embedder = get_embedder(HASH)
    query, near, far = embedder.embed(["budget vote results", "the results of the budget vote", "hiking in the mountains"])
    assert _cos(query, near) > _cos(query, far) + 0.3


def test_hash_of_empty_text_is_still_a_unit_vector():
    (vector,) = get_embedder(HASH).embed([""])
    assert math.isclose(sum(v * v for v in vector), 1.0)


@pytest.mark.skipif(not is_available(), reason="requirements-local.txt is not installed")
def test_local_model_finds_paraphrases():
    embedder = get_embedder(ModelSpec("local", "local", 384))
    query, near, far = embedder.embed(["Where does the team meet?", "Our office is in Kyiv", "I like pancakes"])
    assert len(query) == 384
    assert _cos(query, near) > _cos(query, far)
