"""The `llm:<logical model>` embedding: any embedding-capable model of the LLM proxy,
called in-process through its gateway (routing, fallbacks, rate limits and usage included).

This is the way to a multilingual dense side: serve multilingual-e5 or BGE-M3 behind any
OpenAI-compatible `/embeddings` upstream (TEI, vLLM, Ollama, a hosted API) and register it
here. Models trained with instructions read them from the options: `query_prefix` and
`document_prefix` (multilingual-e5: `"query: "` and `"passage: "`) are put before each text.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.memory.embeddings import EmbeddingError, ModelSpec, TransientEmbeddingError, check_vectors, register


class LlmEmbedder:
    slow = True  # a call to the proxy and its upstream

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.logical_model = spec.options.get("model") or spec.name.removeprefix("llm:")
        self.prefixes = {
            "query": str(spec.options.get("query_prefix") or ""),
            "document": str(spec.options.get("document_prefix") or ""),
        }

    def embed(self, texts: Sequence[str], *, purpose: str = "document") -> list[list[float]]:
        try:
            from apps.llm.gateway import create_embeddings_sync
        except ImportError as exc:
            raise EmbeddingError("the LLM gateway (apps.llm.gateway) is not available") from exc
        from daarion.infra.errors import DaarionError

        try:
            prefix = self.prefixes.get(purpose, "")
            result = create_embeddings_sync(model=self.logical_model, inputs=[prefix + text for text in texts], agent_id=None)
        except DaarionError as exc:
            # 429 and 5xx are the upstream's bad moment; 4xx are our request or config.
            if exc.status == 429 or exc.status >= 500:
                raise TransientEmbeddingError(f"{exc.type}: {exc.message}") from exc
            raise EmbeddingError(f"{exc.type}: {exc.message}") from exc
        vectors = [[float(x) for x in v] for v in result.vectors]
        return check_vectors(self.spec, vectors, len(texts))


register("llm")(LlmEmbedder)
