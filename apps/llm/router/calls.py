"""What a routed call carries in (its context, the chat call, the request a deployment gets
from it) and what it learns on the way (attempts, the outcome)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.llm.choices import Endpoint
from apps.llm.providers import BaseProvider, ChatRequest, Usage
from apps.llm.providers.base import ADVISORY_PARAMS, unsupported_params
from apps.llm.router.tool_names import ToolNames
from apps.llm.selectors import DeploymentSpec, ModelSpec


@dataclass
class CallContext:
    agent_id: str | None = None
    microdao_id: str | None = None
    channel_id: str | None = None
    request_id: str = ""
    endpoint: str = Endpoint.PROXY
    # Per-call provider keys, provider name -> API key (an agent's own keys): used instead of
    # the provider's key for this call only; never cached, logged or repr'd.
    credentials: Mapping[str, str] | None = field(default=None, repr=False)

    def api_key_for(self, provider_name: str) -> str | None:
        return (self.credentials or {}).get(provider_name) or None


@dataclass
class Attempt:
    model: str
    provider: str
    upstream_model: str
    error_type: str
    message: str
    status: int | None = None
    retry_after: float | None = None  # the upstream's Retry-After, on a 429
    param: str | None = None  # the request parameter an unsupported_parameter skip is about

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "error_type": self.error_type,
            "status": self.status,
            "message": self.message,
        }


@dataclass
class Outcome:
    """What the caller learns besides the answer: who served it and at what cost in time."""

    logical_model: str
    model_resolved: str = ""
    provider: str = ""
    provider_kind: str = ""
    upstream_model: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    calls: int = 0
    upstream_ms: float = 0.0
    ttft_ms: float | None = None
    started: float = field(default_factory=time.perf_counter)
    rate_headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    # Parameters the serving provider cannot take, left out because its model says so.
    dropped_params: tuple[str, ...] = ()

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started) * 1000 - self.upstream_ms)


@dataclass
class ChatCall:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    # Further OpenAI parameters as the caller sent them (ChatRequest.params).
    params: dict[str, Any] | None = None

    @property
    def cap(self) -> int | None:
        """The completion cap under either of OpenAI's names (for estimates)."""
        return (self.params or {}).get("max_completion_tokens") or self.max_tokens


def fit_params(
    call: ChatCall, client: BaseProvider, spec: ModelSpec, deployment: DeploymentSpec
) -> tuple[dict[str, Any] | None, tuple[str, ...], Attempt | None]:
    """(the parameters this deployment gets, those dropped, or the skip when it cannot take
    one and its model refuses rather than drops)."""
    if not call.params:
        return None, (), None
    unsupported = unsupported_params(call.params, client.accepts)
    if not unsupported:
        return call.params, (), None
    refusable = [name for name in unsupported if name not in ADVISORY_PARAMS]
    if spec.drop_params or not refusable:
        return {k: v for k, v in call.params.items() if k not in unsupported}, tuple(unsupported), None
    name = refusable[0]
    return (
        None,
        (),
        Attempt(
            spec.name,
            deployment.provider.name,
            deployment.upstream_model,
            "unsupported_parameter",
            f"parameter {name!r} is not supported by model {spec.name!r} (provider kind {deployment.provider.kind!r}); "
            "leave it out, or let the model drop it (drop_unsupported_params)",
            param=name,
        ),
    )


def chat_request(call: ChatCall, names: ToolNames) -> ChatRequest:
    """The provider request of a call (model, key and parameters are set per deployment)."""
    return ChatRequest(
        messages=names.messages(call.messages),
        temperature=call.temperature,
        max_tokens=call.max_tokens,
        tools=names.tools(call.tools),
        tool_choice=names.tool_choice(call.tool_choice),
        response_format=call.response_format,
    )
