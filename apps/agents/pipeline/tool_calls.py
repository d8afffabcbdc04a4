"""The model's tool calls: parsed (native or the text convention), run through toolcore, and
their results put in the form the model reads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from apps.agents.pipeline.events import PreparedTurn, ToolOutput
from apps.tools.services import tool_call

# A tool result is fed back to the model (and stored) at most this long, so one chatty tool
# cannot blow the context window.
MAX_TOOL_RESULT_CHARS = 8_000
# The seed's convention for models without tool calling: `TOOL: projects.list {"a": 1}`.
TEXT_TOOL_LINE = re.compile(r"^\s*TOOL:\s*([A-Za-z0-9_.:-]{1,128})\s*(\{.*\})?\s*$")


@dataclass
class PendingCall:
    id: str
    function_name: str
    arguments_text: str
    tool_id: str = ""
    arguments: Any = None
    parse_error: str | None = None


def parse_text_tool_calls(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Splits a reply of a model without tool calling into (text, [(tool id, json args)])."""
    kept, calls = [], []
    for line in text.splitlines():
        match = TEXT_TOOL_LINE.match(line)
        if match:
            calls.append((match.group(1), match.group(2) or "{}"))
        else:
            kept.append(line)
    return "\n".join(kept).strip(), calls


def parse_arguments(call: PendingCall) -> None:
    try:
        value = json.loads(call.arguments_text or "{}")
    except json.JSONDecodeError as exc:
        call.arguments, call.parse_error = call.arguments_text, f"the arguments are not valid JSON: {exc.msg}"
        return
    call.arguments = value
    if not isinstance(value, dict):
        call.parse_error = "the arguments must be a JSON object"


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_TOOL_RESULT_CHARS else text[:MAX_TOOL_RESULT_CHARS] + "…(truncated)"


def tool_message_content(output: ToolOutput) -> str:
    if output.ok:
        return _clip(output.result)
    # The model is told plainly that the call failed or was refused, so it can answer anyway.
    return _clip({"error": output.error, "error_type": output.error_type, "tool_id": output.tool_id})


async def run_tool(prepared: PreparedTurn, call: PendingCall, step: int) -> ToolOutput:
    if call.parse_error:
        return ToolOutput(step, call.id, call.tool_id, False, error=call.parse_error, error_type="invalid_args")
    outcome = await tool_call(
        tool_id=call.tool_id,
        agent_id=prepared.blueprint.id,
        microdao_id=prepared.microdao_id,
        args=call.arguments,
        context={
            "channel_id": prepared.turn.channel_id,
            "session_id": prepared.session_id,
            "user_id": prepared.turn.user_id,
            "turn_id": prepared.turn_id,
        },
        request_id=prepared.turn.request_id,
        # toolcore injects only the secrets a tool declares (agent_secret_headers).
        agent_secrets=prepared.blueprint.secrets,
    )
    return ToolOutput(
        step, call.id, call.tool_id, outcome.ok, result=outcome.result, error=outcome.error, error_type=outcome.error_type
    )
