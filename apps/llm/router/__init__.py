"""The LLM router: logical model -> deployments -> provider calls, with retries, fallbacks,
cooldowns, rate limits and usage. The API endpoints and the in-process gateway both call
`chat`, `Stream` and `embed` here, so they behave the same.

One module per concern: `calls` (what a call carries and learns), `tool_names`, `cooldown`
(the shared cooldown), `candidates` (deployment order), `loop` (the one routing loop),
`credentials` (keys kept out of answers), `admission` (rate limits, budgets, usage records),
and the three calls: `completions`, `streams`, `embeddings`. Other apps import from here only.
"""

from apps.llm.router.calls import CallContext, ChatCall, Outcome
from apps.llm.router.candidates import fresh_registry, resolve_model
from apps.llm.router.completions import chat
from apps.llm.router.cooldown import Health, health, health_subject
from apps.llm.router.embeddings import embed
from apps.llm.router.streams import Stream
from apps.llm.router.tool_names import ToolNames

__all__ = [
    "CallContext",
    "ChatCall",
    "Health",
    "Outcome",
    "Stream",
    "ToolNames",
    "chat",
    "embed",
    "fresh_registry",
    "health",
    "health_subject",
    "resolve_model",
]
