"""Request and response models of /internal/llm and the OpenAI-compatible /v1.

Plain pydantic models rather than ninja.Schema: Schema wraps every model instance (each
message of a request too) in a validator that can read Django ORM objects, a per-message cost
on the proxy's hot path that models built from JSON never need. Ninja takes them as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = r"^[A-Za-z0-9._:@/-]{1,200}$"
_REQUEST_ID = r"^[A-Za-z0-9._:-]{1,128}$"


class MessageIn(BaseModel):
    # Extra keys (e.g. `name`, provider-specific fields) pass through to the upstream.
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(None, max_length=200)

    @field_validator("tool_calls")
    @classmethod
    def _calls_have_functions(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for call in value or []:
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ValueError("each tool call needs function.name")
            if not isinstance(function.get("arguments", ""), str):
                raise ValueError("function.arguments must be a JSON string")
        return value


class FunctionIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=128)
    description: str | None = Field(None, max_length=4000)
    parameters: dict[str, Any] | None = None


class ToolIn(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionIn


class ChatParamsIn(BaseModel):
    """OpenAI's chat parameters beyond the ones the router reads itself. They reach an
    OpenAI-compatible upstream as sent; other provider kinds map, refuse or drop them (the
    model's drop_unsupported_params). Checked here only for their JSON types and OpenAI's
    documented ranges."""

    stop: str | list[str] | None = None
    seed: int | None = None
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    n: int | None = Field(None, ge=1, le=128)
    user: str | None = Field(None, max_length=512)
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = Field(None, max_length=32)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)


# The names above, read in this order into ChatCall.params (metadata is the door's: OpenAI's
# on /v1, ours on /internal).
CHAT_PARAMS = tuple(ChatParamsIn.model_fields)


class MetadataIn(BaseModel):
    agent_id: str | None = Field(None, pattern=_ID)
    microdao_id: str | None = Field(None, pattern=_ID)
    channel_id: str | None = Field(None, pattern=_ID)


class ProxyIn(ChatParamsIn):
    model: str = Field(..., min_length=1, max_length=100)
    messages: list[MessageIn] = Field(..., min_length=1, max_length=1000)
    metadata: MetadataIn = Field(default_factory=MetadataIn)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    request_id: str | None = Field(None, pattern=_REQUEST_ID)
    # Any further keys for the upstream, sent at the top level of its request as they are.
    extra_body: dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") not in {"text", "json_object", "json_schema"}:
            raise ValueError("type must be text, json_object or json_schema")
        return value


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    id: str
    name: str
    arguments: str


class ProxyOut(BaseModel):
    content: str
    reasoning_content: str | None = None
    usage: UsageOut
    provider: str
    model_resolved: str
    upstream_model: str
    finish_reason: str
    tool_calls: list[ToolCallOut]
    request_id: str


class BatchIn(BaseModel):
    requests: list[ProxyIn] = Field(..., min_length=1)
    concurrency: int | None = Field(None, ge=1, le=32)


class ErrorBody(BaseModel):
    type: str
    message: str
    details: Any = None


class BatchItemOut(BaseModel):
    index: int
    ok: bool
    status: int
    response: ProxyOut | None = None
    error: ErrorBody | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class DeploymentOut(BaseModel):
    id: int
    provider: str
    provider_kind: str
    upstream_model: str
    weight: int
    rpm_limit: int | None
    tpm_limit: int | None
    healthy: bool
    cooling_down: bool
    cooldown_remaining_s: float
    recent_failures: int


class ModelOut(BaseModel):
    name: str
    enabled: bool
    can_embed: bool
    context_window: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    fallbacks: list[str]
    healthy: bool
    deployments: list[DeploymentOut]


class ModelsOut(BaseModel):
    models: list[ModelOut]


# --- /v1 (OpenAI-compatible) --------------------------------------------------------------


class StreamOptionsIn(BaseModel):
    include_usage: bool = False


class ChatCompletionIn(ChatParamsIn):
    # Unknown top-level keys (the SDKs' extra_body lands here) pass through to the upstream.
    model_config = ConfigDict(extra="allow")

    model: str = Field(..., min_length=1, max_length=100)
    messages: list[MessageIn] = Field(..., min_length=1, max_length=1000)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptionsIn | None = None
    metadata: dict[str, str] | None = None


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(..., min_length=1, max_length=100)
    # A string, strings, token ids, or lists of token ids (LangChain's default), as OpenAI takes.
    input: str | list[str] | list[int] | list[list[int]] = Field(...)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=16_000)
    user: str | None = Field(None, max_length=512)

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if not value:
            raise ValueError("give at least one input")
        if isinstance(value[0], int):
            return value  # one input of token ids
        if len(value) > 2048:
            raise ValueError("at most 2048 inputs per call")
        if any(isinstance(item, list) and not item for item in value):
            raise ValueError("a token-id input is empty")
        return value


class ResponsesIn(BaseModel):
    """OpenAI's Responses API request (POST /v1/responses). Items are checked as they are
    translated (apps/llm/responses.py), where each refusal names its field."""

    # Unknown top-level keys pass through to the upstream, as on chat completions.
    model_config = ConfigDict(extra="allow")

    model: str = Field(..., min_length=1, max_length=100)
    input: str | list[dict[str, Any]] = Field(...)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=512)
    metadata: dict[str, str] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None
    stream: bool = False
    previous_response_id: str | None = Field(None, max_length=200)
    include: list[str] | None = None  # accepted; nothing extra (encrypted reasoning, ...) is produced
    truncation: Literal["auto", "disabled"] | None = None  # accepted; the router does not truncate
    stream_options: dict[str, Any] | None = None
    # Responses-only features without a chat counterpart: refused by name when asked for
    # (apps/llm/responses.py), never sent upstream as chat parameters.
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = Field(None, ge=1)  # accepted: the proxy runs no tools itself

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one input item")
        if isinstance(value, list) and len(value) > 2000:
            raise ValueError("at most 2000 input items")
        return value


class AnthropicMessageIn(BaseModel):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesIn(BaseModel):
    """Anthropic's Messages API request (POST /v1/messages)."""

    model_config = ConfigDict(extra="ignore")  # Anthropic-only options (service_tier, container, ...)

    model: str = Field(..., min_length=1, max_length=100)
    max_tokens: int = Field(..., ge=1, le=1_000_000)
    messages: list[AnthropicMessageIn] = Field(..., min_length=1, max_length=1000)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None  # effort and a JSON-schema format


class CountTokensIn(MessagesIn):
    """Anthropic's token count request: a message request without max_tokens."""

    max_tokens: int = Field(1, ge=1, le=1_000_000)
