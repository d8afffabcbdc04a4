"""Executors of toolcore: a registry of kinds (http, python, mcp) filled by `@executor(kind)`.

Adding a kind is one module with one decorated coroutine, imported at the bottom here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from apps.tools.choices import CallStatus

if TYPE_CHECKING:
    from apps.tools.registry import ToolDefinition


@dataclass(frozen=True)
class ToolContext:
    """Who is calling, passed to every executor (and to HTTP targets as `context`)."""

    tool_id: str
    agent_id: str
    microdao_id: str
    request_id: str
    extra: dict[str, Any] = field(default_factory=dict)
    # The calling agent's secrets the tool declared (agent_secret_headers), header -> value.
    # Never in as_dict(): they go to the target as headers only.
    secret_headers: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        # The caller's extra context first, so it can never override who is calling.
        return {
            **self.extra,
            "tool_id": self.tool_id,
            "agent_id": self.agent_id,
            "microdao_id": self.microdao_id,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class ExecutionResult:
    ok: bool
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    status: str = CallStatus.OK
    details: Any = None

    @classmethod
    def success(cls, result: Any) -> "ExecutionResult":
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, error: str, error_type: str, *, status: str = CallStatus.ERROR, details: Any = None) -> "ExecutionResult":
        return cls(ok=False, error=error, error_type=error_type, status=status, details=details)


ExecutorFn = Callable[["ToolDefinition", dict, ToolContext], Awaitable[ExecutionResult]]
_EXECUTORS: dict[str, ExecutorFn] = {}


def executor(kind: str) -> Callable[[ExecutorFn], ExecutorFn]:
    def register(fn: ExecutorFn) -> ExecutorFn:
        if kind in _EXECUTORS:
            raise RuntimeError(f"executor {kind!r} registered twice")
        _EXECUTORS[kind] = fn
        return fn

    return register


def get_executor(kind: str) -> ExecutorFn | None:
    return _EXECUTORS.get(kind)


def executor_kinds() -> list[str]:
    return sorted(_EXECUTORS)


# Importing the modules fills the registry.
from apps.tools.executors import http as _http  # noqa: E402,F401
from apps.tools.executors import python as _python  # noqa: E402,F401
from apps.tools.executors import mcp as _mcp  # noqa: E402,F401
