"""What a turn takes (TurnInput, PreparedTurn) and the events it yields, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.agents.selectors import Blueprint
from daarion.infra.errors import DaarionError


@dataclass
class TurnInput:
    agent_id: str
    message: str
    microdao_id: str | None = None
    channel_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    context: list[dict[str, Any]] = field(default_factory=list)
    request_id: str | None = None


@dataclass
class PreparedTurn:
    turn: TurnInput
    blueprint: Blueprint
    turn_id: str
    session_id: str
    microdao_id: str
    # The session's earlier turns as prompt messages (runs/history.py), oldest first.
    history: list[dict[str, Any]] = field(default_factory=list)
    # Filled as the turn goes: the transcript entries of the steps done so far and the text
    # of the step in progress, so a cancelled run can keep its partial answer.
    transcript: list[dict[str, Any]] = field(default_factory=list)
    step_text: list[str] = field(default_factory=list)


@dataclass
class TurnStarted:
    turn_id: str
    agent_id: str
    agent_version: int
    session_id: str


@dataclass
class MemoriesRecalled:
    memory_ids: list[str]
    error: str | None = None


@dataclass
class StepStarted:
    step: int


@dataclass
class TextDelta:
    step: int
    text: str


@dataclass
class ToolInputStarted:
    step: int
    call_id: str
    tool_id: str


@dataclass
class ToolInputAvailable:
    step: int
    call_id: str
    tool_id: str
    function_name: str
    arguments: Any


@dataclass
class ToolOutput:
    step: int
    call_id: str
    tool_id: str
    ok: bool
    result: Any = None
    error: str | None = None
    error_type: str | None = None


@dataclass
class StepFinished:
    step: int
    usage: dict[str, int]
    finish_reason: str
    provider: str
    model: str


@dataclass
class TurnFinished:
    reply: str
    usage: dict[str, int]
    stored_memory_id: str | None
    finish_reason: str


@dataclass
class TurnFailed:
    error: DaarionError


Event = (
    TurnStarted
    | MemoriesRecalled
    | StepStarted
    | TextDelta
    | ToolInputStarted
    | ToolInputAvailable
    | ToolOutput
    | StepFinished
    | TurnFinished
    | TurnFailed
)
