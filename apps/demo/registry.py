"""Demo registry for `manage.py seed_demo`: the seed's providers and models plus offline stub
models, so the proxy answers out of the box with no API key. Applied through the registry
engine without pruning, so it is idempotent and leaves what an operator added alone."""

from __future__ import annotations

from apps.registry.documents import registry_apply

DEMO_REGISTRY = {
    "providers": {
        "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
        "deepseek": {"base_url": "https://api.deepseek.com/v1", "api_key_env": "DEEPSEEK_API_KEY"},
        "local": {"kind": "vllm", "base_url": "http://local-llm:8000/v1", "timeout_seconds": 30, "max_retries": 1},
        "stub": {"kind": "stub"},
    },
    "models": {
        "gpt-4.1-mini": {
            "provider": "openai",
            "name": "gpt-4.1-mini",
            "context_window": 1047576,
            "price": {"input": 0.4, "output": 1.6},
            "fallbacks": ["dagi-stub"],
        },
        "deepseek-r1": {
            "provider": "deepseek",
            "name": "deepseek-reasoner",
            "context_window": 65536,
            "price": {"input": 0.55, "output": 2.19},
            "fallbacks": ["dagi-stub"],
        },
        "dagi-local-8b": {
            "provider": "local",
            "name": "qwen2.5-8b-instruct",
            "context_window": 32768,
            "fallbacks": ["dagi-stub"],
        },
        "dagi-stub": {
            "provider": "stub",
            "name": "dagi-stub",
            "context_window": 32768,
            "description": "Offline deterministic model (no network, no key)",
        },
        "dagi-embed-stub": {
            "provider": "stub",
            "name": "stub-embed-384",
            "can_embed": True,
            "context_window": 8192,
            "description": "Offline deterministic embeddings, 384 dimensions",
        },
    },
}


def seed() -> list[str]:
    plan = registry_apply(document=DEMO_REGISTRY, prune=False)
    counts = plan.summary()
    return [
        f"llm registry: {counts['create']} created, {counts['update']} updated, {counts['unchanged']} unchanged",
        "llm: offline models dagi-stub (chat) and dagi-embed-stub (embeddings) answer with no API key",
    ]
