"""Request and response models of the toolcore API (the seed's ToolDefinition, ToolCallRequest,
ToolCallResult, with error_type, latency and request id added)."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Field, Schema


class AnnotationsOut(Schema):
    read_only: bool
    destructive: bool
    idempotent: bool


class ToolDefinitionOut(Schema):
    id: str
    name: str
    description: str
    input_schema: dict
    output_schema: dict | None
    executor: str
    target: str
    allowed_agents: list[str] | None
    timeout: float
    enabled: bool
    version: int
    annotations: AnnotationsOut
    rate_limit_per_minute: int | None
    agent_secret_headers: dict[str, str] = Field(
        default_factory=dict, description="header -> name of the calling agent's secret sent as that header"
    )


class ToolListParams(Schema):
    agent_id: str | None = Field(None, description="only the tools this agent may call")
    format: Literal["native", "openai", "mcp"] = "native"


class ToolListOut(Schema):
    tools: list[ToolDefinitionOut]


class OpenAIToolListOut(Schema):
    tools: list[dict[str, Any]]
    function_map: dict[str, str] = Field(description="OpenAI function name -> tool id")


class MCPToolListOut(Schema):
    tools: list[dict[str, Any]]


class ToolCallIn(Schema):
    tool_id: str = Field(min_length=1, max_length=128)
    agent_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the agent the call acts for; may be left out by a token bound to exactly one agent",
    )
    microdao_id: str = Field(max_length=200)
    args: dict[str, Any]
    context: dict[str, Any] | None = None


class ToolCallOut(Schema):
    ok: bool
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    details: Any = None
    latency_ms: float
    request_id: str
