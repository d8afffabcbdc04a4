"""Request and response models of /internal/agents."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Field, Schema

from daarion.storable import StorableText


class AgentStateOut(Schema):
    id: str
    name: str
    microdao_id: str
    enabled: bool
    model: str
    version: int
    loaded: bool
    loaded_since: float | None = Field(None, description="Unix time of the last load or unload")


class AgentListOut(Schema):
    items: list[AgentStateOut]


class MemorySettingsOut(Schema):
    recall_limit: int
    kinds: list[str]


class BlueprintOut(AgentStateOut):
    system_prompt: str
    character: dict[str, Any]
    memory: MemorySettingsOut
    max_tool_steps: int
    tool_mode: str
    temperature: float | None
    secret_names: list[str] = Field(description="Names only; values need the agents:secrets scope")


class SecretsOut(Schema):
    agent_id: str
    version: int
    secrets: dict[str, str]


class ContextMessageIn(Schema):
    role: Literal["user", "assistant", "system"] = "user"
    author: StorableText | None = Field(None, max_length=200, description="Display name or user id of the author")
    content: StorableText = Field(max_length=20_000)


class ChatIn(Schema):
    # Text the turn stores (memory, transcript, usage): PostgreSQL refuses NUL, so it is a 422
    # here rather than a turn whose memory silently fails to save.
    microdao_id: StorableText | None = Field(None, min_length=1, max_length=100, description="Defaults to the agent's microDAO")
    channel_id: StorableText | None = Field(None, min_length=1, max_length=200)
    session_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="Transcript to append to; one is made if absent"
    )
    message: StorableText = Field(min_length=1, max_length=20_000)
    user_id: StorableText | None = Field(None, max_length=200)
    context: list[ContextMessageIn] = Field(default_factory=list, max_length=100)
    stream: bool = False


class ToolCallOut(Schema):
    id: str
    tool_id: str
    function_name: str
    arguments: Any
    ok: bool
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    step: int


class StepUsageOut(Schema):
    step: int
    model: str | None = None
    provider: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any]


class ChatOut(Schema):
    agent_id: str
    agent_version: int
    session_id: str
    reply: str
    tool_calls: list[ToolCallOut]
    memory_ids: list[str] = Field(description="Memories recalled for this turn")
    stored_memory_id: str | None
    usage: dict[str, int]
    steps: list[StepUsageOut]
    request_id: str | None = None
