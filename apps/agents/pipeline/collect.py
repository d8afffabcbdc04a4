"""A turn's events folded into the JSON answer of POST /chat."""

from __future__ import annotations

from typing import Any

from apps.agents.pipeline.events import (
    Event,
    MemoriesRecalled,
    PreparedTurn,
    StepFinished,
    ToolInputAvailable,
    ToolOutput,
    TurnFailed,
    TurnFinished,
)
from daarion.infra.errors import DaarionError


def add_usage(total: dict[str, int], usage: dict[str, int]) -> None:
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[name] = total.get(name, 0) + int(usage.get(name, 0) or 0)


class TurnCollector:
    """Folds a turn's events into the JSON answer of POST /chat."""

    def __init__(self, prepared: PreparedTurn) -> None:
        self.prepared = prepared
        self.calls: dict[str, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []
        self.memory_ids: list[str] = []
        self.out: dict[str, Any] = {}
        self.error: DaarionError | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, MemoriesRecalled):
            self.memory_ids = event.memory_ids
        elif isinstance(event, ToolInputAvailable):
            self.calls[event.call_id] = {
                "id": event.call_id,
                "tool_id": event.tool_id,
                "function_name": event.function_name,
                "arguments": event.arguments,
                "step": event.step,
                "ok": False,
            }
        elif isinstance(event, ToolOutput):
            self.calls[event.call_id].update(ok=event.ok, result=event.result, error=event.error, error_type=event.error_type)
        elif isinstance(event, StepFinished):
            self.steps.append(
                {
                    "step": event.step,
                    "model": event.model,
                    "provider": event.provider,
                    "finish_reason": event.finish_reason,
                    "usage": event.usage,
                }
            )
        elif isinstance(event, TurnFinished):
            self.out = {"reply": event.reply, "usage": event.usage, "stored_memory_id": event.stored_memory_id}
        elif isinstance(event, TurnFailed):
            self.error = event.error

    def result(self, *, reply: str = "") -> dict[str, Any]:
        usage: dict[str, int] = {}
        for step in self.steps:
            add_usage(usage, step["usage"])
        return {
            "agent_id": self.prepared.blueprint.id,
            "agent_version": self.prepared.blueprint.version,
            "session_id": self.prepared.session_id,
            "tool_calls": list(self.calls.values()),
            "memory_ids": self.memory_ids,
            "steps": self.steps,
            "request_id": self.prepared.turn.request_id,
            "reply": reply,
            "usage": usage,
            "stored_memory_id": None,
            **self.out,
        }
