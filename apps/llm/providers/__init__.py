"""Provider clients. Each module registers its class for one or more provider kinds with
`@register_provider(...)`; importing this package loads them all."""

from apps.llm.providers import anthropic, openai_compat, stub  # noqa: F401 - registration side effect
from apps.llm.providers.base import (
    PROVIDER_CLASSES,
    BaseProvider,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    ProviderError,
    StreamEvent,
    ToolCall,
    Usage,
    client_for,
    register_provider,
)

__all__ = [
    "PROVIDER_CLASSES",
    "BaseProvider",
    "ChatRequest",
    "ChatResponse",
    "EmbeddingResponse",
    "ProviderError",
    "StreamEvent",
    "ToolCall",
    "Usage",
    "client_for",
    "register_provider",
]
