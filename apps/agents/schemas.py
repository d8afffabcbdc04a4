"""Request and response models of /internal/agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict

from apps.agents.choices import RunStatus, RunStrategy

from daarion.infra.storable import StorableText

SESSION_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


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


class UIMessagePartIn(Schema):
    """A part of an AI SDK UIMessage; only text parts are read, the others are accepted as sent."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(max_length=100)
    text: StorableText | None = Field(None, max_length=20_000)


class UIMessageIn(Schema):
    model_config = ConfigDict(extra="allow")
    id: str | None = Field(None, max_length=200)
    role: Literal["user", "assistant", "system"]
    parts: list[UIMessagePartIn] = Field(default_factory=list, max_length=1000)


class ChatIn(Schema):
    """A turn: our body (`message`, ...) or the body the AI SDK's DefaultChatTransport sends
    (`id` = the chat, `messages` = UIMessages; the last user message's text is the message)."""

    # Text the turn stores (memory, transcript, usage): PostgreSQL refuses NUL, so it is a 422
    # here rather than a turn whose memory silently fails to save.
    microdao_id: StorableText | None = Field(None, min_length=1, max_length=100, description="Defaults to the agent's microDAO")
    channel_id: StorableText | None = Field(None, min_length=1, max_length=200)
    session_id: str | None = Field(None, pattern=SESSION_ID_RE, description="Transcript to append to; one is made if absent")
    message: StorableText | None = Field(None, min_length=1, max_length=20_000)
    user_id: StorableText | None = Field(None, max_length=200)
    context: list[ContextMessageIn] = Field(default_factory=list, max_length=100)
    stream: bool | None = Field(
        None, description="Stream the run (SSE); default: false, or true for an AI SDK body or Accept: text/event-stream"
    )
    strategy: RunStrategy = Field(
        RunStrategy.REJECT, description="While a run of this session is active: reject (409) or enqueue"
    )
    # The AI SDK's DefaultChatTransport body.
    id: str | None = Field(None, pattern=SESSION_ID_RE, description="AI SDK chat id: the session")
    messages: list[UIMessageIn] | None = Field(None, max_length=1000, description="AI SDK UIMessages")
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    messageId: str | None = Field(None, max_length=200)

    def problems(self) -> list[dict[str, str]]:
        """What the field rules cannot say: the message (ours, or the AI SDK's last user
        message's text) must be there, and `id` and `session_id` must agree."""
        if self.message is None and self.messages is not None:
            users = [m for m in self.messages if m.role == "user"]
            text = "\n".join(p.text for p in (users[-1].parts if users else []) if p.type == "text" and p.text)
            if not text.strip():
                return [{"path": "body.messages", "message": "the last user message has no text part"}]
            if len(text) > 20_000:
                return [{"path": "body.messages", "message": "the last user message is longer than 20000 characters"}]
            self.message = text
        if self.message is None:
            return [{"path": "body.message", "message": "Field required (or the AI SDK's messages)"}]
        if self.session_id is not None and self.id is not None and self.session_id != self.id:
            return [{"path": "body.id", "message": "id and session_id name different sessions"}]
        self.session_id = self.session_id or self.id
        return []

    @property
    def ai_sdk_body(self) -> bool:
        return self.messages is not None


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
    run_id: str
    status: RunStatus = Field(description="succeeded, or cancelled (the partial answer)")


class RunOut(Schema):
    id: str
    agent_id: str
    session_id: str
    status: RunStatus
    strategy: RunStrategy
    message: dict[str, Any] | None = Field(description="The assistant message as an AI SDK UIMessage (id, role, parts, metadata)")
    reply: str | None
    usage: dict[str, Any]
    step_count: int
    error: dict[str, Any] | None
    idempotency_key: str | None
    request_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


class RunListOut(Schema):
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: no more")
