"""What every provider client speaks: normalized requests, responses, stream events and
errors, plus the registry that maps a provider kind to its client class."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apps.llm.providers.errors import ProviderError, error_from_status, parse_retry_after
from apps.llm.providers.transport import Transport
from apps.llm.selectors import ProviderSpec

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
    "error_from_status",
    "parse_retry_after",
    "register_provider",
    "ADVISORY_PARAMS",
    "unsupported_params",
]


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of the completion tokens, those spent reasoning, where the upstream reports them.
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def openai_dict(self) -> dict[str, Any]:
        """OpenAI's usage object: the counts, with the reasoning tokens where known."""
        out: dict[str, Any] = self.as_dict()
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


@dataclass
class ChatRequest:
    """A chat call in OpenAI's vocabulary; adapters translate it for other providers."""

    messages: list[dict[str, Any]]
    model: str = ""  # the upstream model name, filled in per deployment
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    # The caller's other OpenAI parameters (stop, seed, top_p, max_completion_tokens, unknown
    # keys, ...) as sent, less those the provider cannot take and its model drops.
    params: dict[str, Any] | None = None
    # A per-call key (an agent's own, for this call only) replacing the provider's; sent as a
    # per-request header, so the pooled client never holds it. Never repr'd or logged.
    api_key: str | None = field(default=None, repr=False)


@dataclass
class ChatResponse:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    reasoning: str = ""  # DeepSeek-style reasoning_content / Anthropic thinking, where sent
    # Further choices when the caller asked for n > 1 (OpenAI-compatible upstreams only).
    alternatives: list[ChatResponse] = field(default_factory=list)
    # Upstream fields beyond the above, passed on: {"choice": {"logprobs": ...}, "message":
    # {"refusal": ...}}.
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class StreamEvent:
    """One piece of a streamed answer: what providers yield, the router passes on and the
    in-process gateway hands its callers (one type all the way, no copy per piece).

    kind "text": `text` is a delta. kind "reasoning": `text` is a delta of the model's
    reasoning (DeepSeek's reasoning_content, Anthropic's thinking). kind "tool_call": `index`
    identifies the call, `id` and `name` come with its first event, `arguments` is a delta of
    the JSON string. kind "finish": the last event, with `finish_reason` and `usage` (the
    provider's, or estimated when it sent none); the router adds `provider` and
    `model_resolved`, the deployment that served the stream.
    """

    kind: str
    text: str = ""
    index: int = 0
    id: str = ""
    name: str = ""
    arguments: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    provider: str = ""
    model_resolved: str = ""


@dataclass
class EmbeddingResponse:
    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)


# Parameters that only label a call for the upstream's own records and never change the
# answer: where a provider cannot take one it is left out (and named in
# x-daarion-dropped-params) whatever the model's setting, rather than refusing the call.
ADVISORY_PARAMS = frozenset({"user", "metadata", "store", "prompt_cache_key", "safety_identifier", "service_tier"})


# Values that ask for what every provider does anyway (clients such as LangChain send `n: 1`):
# never a reason to refuse a call.
_NO_OP_VALUES: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "parallel_tool_calls": True,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "top_p": 1,
}


def unsupported_params(params: Mapping[str, Any], accepts: frozenset[str] | None) -> list[str]:
    """The names in `params` a provider that takes `accepts` (None: everything) cannot take;
    a value that asks for the default behaviour (`n: 1`, `logprobs: false`, ...) counts as taken."""
    if accepts is None:
        return []
    return [
        name
        for name, value in params.items()
        if name not in accepts and not (name in _NO_OP_VALUES and value == _NO_OP_VALUES[name] and type(value) is not str)
    ]


class BaseProvider:
    """A client for one provider row. One instance (and one pooled HTTP client) per
    provider configuration and event loop."""

    # OpenAI chat parameters (beyond model, messages, temperature, max_tokens, tools,
    # tool_choice, response_format) this kind takes, mapped or as they are; None: all, as sent.
    accepts: ClassVar[frozenset[str] | None] = frozenset()
    # Embeddings: does it take `dimensions`, and token-id input?
    embeds_dimensions: ClassVar[bool] = False
    embeds_tokens: ClassVar[bool] = False

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self._http: Transport | None = None

    @property
    def http(self) -> Transport:
        """The pooled transport to this provider (made on first use, in the running loop)."""
        if self._http is None:
            self._http = Transport(base_url=self.spec.base_url, headers=self.default_headers(), timeout=self.spec.timeout)
        return self._http

    def default_headers(self) -> dict[str, str]:
        return dict(self.spec.extra_headers)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry `api_key` for this provider (none for keyless kinds)."""
        return {}

    def call_headers(self, api_key: str | None) -> dict[str, str] | None:
        """Per-request headers for a per-call key; they override the client's default ones."""
        return self.auth_headers(api_key) if api_key else None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def embed(
        self,
        *,
        model: str,
        inputs: list[Any],
        api_key: str | None = None,
        dimensions: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> EmbeddingResponse:
        """`inputs`: strings, or lists of token ids where `embeds_tokens`; `params`: other
        OpenAI embeddings parameters (`user`, unknown keys), for kinds that forward them."""
        raise ProviderError("bad_request", f"provider kind {self.spec.kind!r} does not serve embeddings", status=400)

    def retire(self) -> None:
        """This client's configuration changed: its pool closes once its calls finish."""
        if self._http is not None:
            self._http.retire()


PROVIDER_CLASSES: dict[str, type[BaseProvider]] = {}


def register_provider(*kinds: str) -> Callable[[type[BaseProvider]], type[BaseProvider]]:
    """Class decorator: `@register_provider("openai", "vllm")` makes the class serve those kinds."""

    def decorate(cls: type[BaseProvider]) -> type[BaseProvider]:
        for kind in kinds:
            if kind in PROVIDER_CLASSES and PROVIDER_CLASSES[kind] is not cls:
                raise RuntimeError(f"provider kind {kind!r} is registered twice")
            PROVIDER_CLASSES[kind] = cls
        return cls

    return decorate


# Per event loop (weakly: a finished loop takes its clients with it), per provider row.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, tuple[tuple, BaseProvider]]] = (
    weakref.WeakKeyDictionary()
)


def client_for(spec: ProviderSpec) -> BaseProvider:
    """The pooled client for `spec` in the running event loop (connection pools cannot cross loops)."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.get(loop)
    if per_loop is None:
        per_loop = _clients[loop] = {}
    cached = per_loop.get(spec.id)
    if cached is not None and cached[0] == spec.fingerprint:
        return cached[1]
    cls = PROVIDER_CLASSES.get(spec.kind)
    if cls is None:
        raise ProviderError("bad_request", f"no client for provider kind {spec.kind!r}", status=400)
    client = cls(spec)
    if cached is not None:
        cached[1].retire()
    per_loop[spec.id] = (spec.fingerprint, client)
    return client
