"""The `hash` embedding: signed feature hashing of word unigrams and bigrams.

Dependency-free, deterministic and fast, so tests and a bare install always have vectors.
It is lexical (no synonyms): similar wording, not similar meaning.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence

from apps.memory.embeddings import ModelSpec, register

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic; left in they dominate short texts' vectors.
_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its "
    "this that these those i you he she we they me him her us them my your his our their what which "
    "who whom when where why how do does did have has had not no so than then there here about into "
    "over just can will would should could may might".split()
)


def _stem(word: str) -> str:
    # A light suffix strip so "meetings"/"meeting" and "planned"/"plan" share features.
    for suffix in ("ingly", "edly", "ing", "ies", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def tokens(text: str) -> list[str]:
    return [_stem(w) for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP]


class HashEmbedder:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def _features(self, text: str) -> Counter:
        words = tokens(text)
        features = Counter(words)
        # Bigrams weigh half: they sharpen phrases without drowning single words.
        for left, right in zip(words, words[1:]):
            features[f"{left} {right}"] += 0.5  # type: ignore[assignment]  # float weights: typeshed types counts as int
        return features

    def embed_one(self, text: str) -> list[float]:
        dims = self.spec.dimensions
        vector = [0.0] * dims
        for feature, count in self._features(text).items():
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % dims
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[bucket] += sign * (1.0 + math.log(count)) if count >= 1 else sign * count
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            # An empty text still needs a valid unit vector for cosine distance.
            vector[0] = 1.0
            return vector
        return [v / norm for v in vector]

    def embed(self, texts: Sequence[str], *, purpose: str = "document") -> list[list[float]]:
        return [self.embed_one(text) for text in texts]


register("hash")(HashEmbedder)
