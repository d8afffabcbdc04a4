"""The python executor: runs only functions registered in code with `@tool_function(name)`.

A tool's target names a registration; the database can never point at an arbitrary dotted
path, so editing a tool in admin cannot make the server import or run anything new.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from apps.tools.choices import CallStatus, Executor
from apps.tools.executors import ExecutionResult, ToolContext, executor
from daarion.infra.outages import outage_error

logger = logging.getLogger(__name__)

ToolFunction = Callable[[dict, ToolContext], Any]
_FUNCTIONS: dict[str, ToolFunction] = {}


class ToolFunctionError(Exception):
    """Raised by a tool function for an expected failure; its message reaches the caller."""

    def __init__(self, message: str, *, error_type: str = "tool_error", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.details = details


def tool_function(name: str) -> Callable[[ToolFunction], ToolFunction]:
    """Registers `fn(args, context)` (sync or async) as the python target `name`."""

    def register(fn: ToolFunction) -> ToolFunction:
        if name in _FUNCTIONS and _FUNCTIONS[name] is not fn:
            raise RuntimeError(f"tool function {name!r} registered twice")
        _FUNCTIONS[name] = fn
        return fn

    return register


def registered_functions() -> list[str]:
    return sorted(_FUNCTIONS)


def _in_worker_thread(fn: ToolFunction, args: dict, context: ToolContext) -> Any:
    try:
        return fn(args, context)
    finally:
        # Pool threads outlive the call; like a request's end, give back the DB connection.
        close_old_connections()


@executor(Executor.PYTHON)
async def run_python(tool: Any, args: dict, context: ToolContext) -> ExecutionResult:
    fn = _FUNCTIONS.get(tool.target)
    if fn is None:
        return ExecutionResult.failure(f"no python tool function is registered as {tool.target!r}", "unknown_function")
    if inspect.iscoroutinefunction(fn):
        call = fn(args, context)
    else:
        # A sync function (ORM work) runs in a worker thread; on timeout the caller gets its
        # answer at once, and the thread finishes on its own (threads cannot be killed).
        call = sync_to_async(_in_worker_thread, thread_sensitive=False)(fn, args, context)
    try:
        async with asyncio.timeout(tool.timeout):
            result = await call
    except TimeoutError:
        return ExecutionResult.failure(
            f"python tool {tool.target!r} did not finish within {tool.timeout:g} s",
            "timeout",
            status=CallStatus.TIMEOUT,
        )
    except ToolFunctionError as exc:
        return ExecutionResult.failure(exc.message, exc.error_type, details=exc.details)
    except Exception as exc:  # noqa: BLE001 - a tool's bug is a failed call, not a 500
        outage = outage_error(exc)
        if outage is not None:  # the tool needs Postgres or Redis and it is down: say so by name
            logger.warning("python tool %s: %s", tool.target, outage.type, exc_info=True)
            return ExecutionResult.failure(outage.message, outage.type)
        logger.exception("python tool %s failed", tool.target)
        message = str(exc) or "(no message)"
        return ExecutionResult.failure(f"{type(exc).__name__}: {message}"[:500], "execution_error")
    return ExecutionResult.success(result)
