"""Fixed vocabularies of the LLM proxy: provider kinds, rate-limit scopes and budget periods,
call outcomes."""

from django.db import models


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    DEEPSEEK = "deepseek", "DeepSeek"
    ANTHROPIC = "anthropic", "Anthropic"
    OLLAMA = "ollama", "Ollama (OpenAI-compatible /v1)"
    VLLM = "vllm", "vLLM"
    OPENAI_COMPATIBLE = "openai_compatible", "Any OpenAI-compatible server"
    STUB = "stub", "Offline stub (deterministic, no network)"


class RateLimitScope(models.TextChoices):
    DEFAULT = "default", "Default (per agent, when the agent has no policy of its own)"
    AGENT = "agent", "One agent"
    MICRODAO = "microdao", "One microDAO (all its agents together)"


class BudgetPeriod(models.TextChoices):
    """The calendar period (UTC) a rate-limit policy's spend budget covers."""

    DAY = "day", "per day (UTC)"
    MONTH = "month", "per calendar month (UTC)"


class UsageStatus(models.TextChoices):
    OK = "ok", "ok"
    ERROR = "error", "error"
    CANCELLED = "cancelled", "cancelled by the client"
    REFUSED = "refused", "refused before routing (unknown/disabled model, rate limit)"


class Endpoint(models.TextChoices):
    PROXY = "proxy", "/internal/llm/proxy"
    STREAM = "stream", "/internal/llm/stream"
    BATCH = "batch", "/internal/llm/batch"
    CHAT = "chat", "/v1/chat/completions"
    RESPONSES = "responses", "/v1/responses"
    MESSAGES = "messages", "/v1/messages (Anthropic)"
    EMBEDDINGS = "embeddings", "embeddings"
    GATEWAY = "gateway", "in-process gateway"
