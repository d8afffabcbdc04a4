"""Shapes of the service answers, as TypedDicts (the client returns the JSON it gets)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

MemoryKind = Literal["conversation", "kb", "task", "dao-event", "summary"]


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class LLMToolCall(TypedDict):
    id: str
    name: str
    arguments: str


class ProxyResult(TypedDict):
    content: str
    usage: Usage
    provider: str
    model_resolved: str
    upstream_model: str
    finish_reason: str
    tool_calls: list[LLMToolCall]
    request_id: str


class StoreResult(TypedDict):
    ok: bool
    id: str
    created: bool


class MemoryHit(TypedDict):
    id: str
    kind: str
    score: float
    content: str
    meta: dict[str, Any]


class QueryResult(TypedDict):
    items: list[MemoryHit]


class MemoryEntry(TypedDict):
    id: str
    agent_id: str
    microdao_id: str
    channel_id: str | None
    kind: str
    content: dict[str, Any]
    text: str
    meta: dict[str, Any]
    occurred_at: str
    created_at: str
    embedding_model: str
    embedding_status: str
    embedding_error: str
    idempotency_key: str | None
    lang: str
    version: int
    updated_at: str | None


class MemoryList(TypedDict):
    items: list[MemoryEntry]
    next_cursor: str | None


class MemoryVersion(TypedDict):
    version: int
    content: dict[str, Any]
    text: str
    meta: dict[str, Any]
    lang: str
    valid_from: str
    replaced_at: str | None
    current: bool


class MemoryHistory(TypedDict):
    id: str
    version: int
    items: list[MemoryVersion]


class Job(TypedDict):
    id: str
    kind: str
    status: str
    agent_id: str
    result: dict[str, Any] | None
    error: str
    created_at: str
    finished_at: str | None


class ToolCallResult(TypedDict, total=False):
    ok: bool
    result: Any
    error: str | None
    error_type: str | None
    latency_ms: float
    request_id: str


class AgentState(TypedDict):
    id: str
    name: str
    microdao_id: str
    enabled: bool
    model: str
    version: int
    loaded: bool
    loaded_since: float | None


class AgentList(TypedDict):
    items: list[AgentState]


class Blueprint(AgentState):
    system_prompt: str
    character: dict[str, Any]
    memory: dict[str, Any]
    max_tool_steps: int
    tool_mode: str
    temperature: float | None
    secret_names: list[str]


class AgentToolCall(TypedDict):
    id: str
    tool_id: str
    function_name: str
    arguments: Any
    ok: bool
    result: Any
    error: str | None
    error_type: str | None
    step: int


class ChatResult(TypedDict):
    agent_id: str
    agent_version: int
    session_id: str
    reply: str
    tool_calls: list[AgentToolCall]
    memory_ids: list[str]
    stored_memory_id: str | None
    usage: dict[str, int]
    steps: list[dict[str, Any]]
    request_id: str | None
    run_id: str
    status: str


class Run(TypedDict):
    id: str
    agent_id: str
    session_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
    strategy: Literal["reject", "enqueue"]
    message: dict[str, Any] | None
    reply: str | None
    usage: dict[str, Any]
    step_count: int
    error: dict[str, Any] | None
    idempotency_key: str | None
    request_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None


class RunList(TypedDict):
    items: list[Run]
    next_cursor: str | None


class ContextMessage(TypedDict, total=False):
    role: Literal["user", "assistant", "system"]
    author: str
    content: str
