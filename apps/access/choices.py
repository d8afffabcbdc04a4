"""Fixed vocabularies of the project wiring."""

from django.db import models


class Scope(models.TextChoices):
    """What a service token may call. Each API router names the scope it needs."""

    LLM = "llm", "LLM proxy (/internal/llm, /v1)"
    MEMORY = "memory", "Memory orchestrator"
    TOOLS = "tools", "Toolcore"
    AGENTS = "agents", "Agents"
    AGENTS_SECRETS = "agents:secrets", "Read agent secrets"
    REGISTRY = "registry", "Registry management API (read and write)"
    REGISTRY_READ = "registry:read", "Registry management API (read only)"
    METRICS = "metrics", "Prometheus metrics (GET /metrics)"
