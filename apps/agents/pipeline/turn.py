"""The turn itself: recall, then model steps (each streamed, its tool calls run and fed
back) up to the agent's step limit, then the answer is remembered. `turn_events` yields the
events `stream.py` encodes and `collect.py` folds; each stage is a function of its own."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from apps.agents.choices import ToolMode
from apps.agents.pipeline.collect import add_usage
from apps.agents.pipeline.events import (
    Event,
    MemoriesRecalled,
    PreparedTurn,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolInputAvailable,
    ToolInputStarted,
    ToolOutput,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from apps.agents.pipeline.prompt import build_messages
from apps.agents.pipeline.remember import assistant_entry, remember, tool_results_entry, user_entry
from apps.agents.pipeline.tool_calls import (
    PendingCall,
    parse_arguments,
    parse_text_tool_calls,
    run_tool,
    tool_message_content,
)
from apps.llm.gateway import ToolCallDeltas, credentials_from_secrets, stream_chat_completion
from apps.memory.search import amemory_query
from apps.tools.registry import registry_snapshot
from apps.tools.selectors import aopenai_tools_for_agent, atools_for_agent
from daarion.infra.errors import DaarionError
from daarion.observability import tracing

logger = logging.getLogger(__name__)


async def _recall(prepared: PreparedTurn) -> tuple[list[Any], str | None]:
    blueprint = prepared.blueprint
    if blueprint.memory_recall_limit <= 0:
        return [], None
    with tracing.span("agent.recall", {"gen_ai.agent.id": blueprint.id}) as span:
        try:
            hits = await amemory_query(
                agent_id=blueprint.id,
                microdao_id=prepared.microdao_id,
                query=prepared.turn.message,
                limit=blueprint.memory_recall_limit,
                kinds=list(blueprint.memory_kinds) or None,
            )
        except Exception as exc:  # noqa: BLE001 - memory helps a turn; its outage must not stop the answer
            message = exc.message if isinstance(exc, DaarionError) else f"{type(exc).__name__}: {exc}"
            logger.warning("memory recall failed", extra={"agent_id": blueprint.id, "error": message}, exc_info=True)
            tracing.mark_failed(span, message)
            return [], message
        tracing.set_attributes(span, {"daarion.memory.hits": len(hits)})
    return hits, None


@dataclass
class _Turn:
    """What the steps of one turn share: the conversation so far and the tallies."""

    prepared: PreparedTurn
    messages: list[dict[str, Any]]
    offered: list[dict[str, Any]]  # OpenAI tools (native mode)
    names: dict[str, str]  # function name -> tool id, for the offered tools
    credentials: dict[str, str]
    text_mode: bool
    all_names: dict[str, str] | None = None  # every tool's function name, looked up on demand
    usage: dict[str, int] = field(default_factory=dict)
    reply_parts: list[str] = field(default_factory=list)
    tool_log: list[ToolOutput] = field(default_factory=list)
    seen_call_ids: set[str] = field(default_factory=set)
    finish_reason: str = "stop"


@dataclass
class _Step:
    number: int
    last: bool
    text: str = ""
    raw_text: str = ""  # the text-mode answer with its TOOL: lines, as the model wrote it
    calls: list[PendingCall] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    provider: str = ""
    model: str = ""


async def _begin(prepared: PreparedTurn, memories: list[Any]) -> _Turn:
    blueprint = prepared.blueprint
    text_mode = blueprint.tool_mode == ToolMode.TEXT
    offered, names = await aopenai_tools_for_agent(blueprint.id)
    text_tools = await atools_for_agent(blueprint.id) if text_mode else None
    if blueprint.max_tool_steps == 0:
        offered, text_tools = [], None
    prepared.transcript[:] = [user_entry(prepared)]
    return _Turn(
        prepared=prepared,
        messages=build_messages(prepared, memories, text_tools),
        offered=offered,
        names=names,
        # The agent's own provider keys (secrets named <PROVIDER>_API_KEY) for its model calls.
        credentials=await credentials_from_secrets(blueprint.secrets),
        text_mode=text_mode,
    )


async def _think(turn: _Turn, step: _Step) -> AsyncIterator[Event]:
    """One model call, streamed: text deltas as they come, tool calls gathered."""
    prepared, blueprint = turn.prepared, turn.prepared.blueprint
    step_text: list[str] = []
    prepared.step_text = step_text
    deltas = ToolCallDeltas()
    finish: Any = None
    # One span per model call, GenAI semantic conventions; current while the call streams, so
    # the upstream request carries its traceparent.
    with tracing.span(
        f"chat {blueprint.model}",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": blueprint.model,
            "gen_ai.agent.id": blueprint.id,
            "gen_ai.request.temperature": blueprint.temperature,
            "daarion.step": step.number,
        },
    ) as span:
        async for event in stream_chat_completion(
            model=blueprint.model,
            messages=turn.messages,
            agent_id=blueprint.id,
            microdao_id=prepared.microdao_id,
            channel_id=prepared.turn.channel_id,
            # The last step offers no tools: the model must answer with what it has.
            tools=None if (turn.text_mode or step.last or not turn.offered) else turn.offered,
            temperature=blueprint.temperature,
            request_id=prepared.turn.request_id,
            credentials=turn.credentials,
        ):
            if event.kind == "text":
                step_text.append(event.text)
                if not turn.text_mode:
                    yield TextDelta(step.number, event.text)
            elif event.kind == "tool_call":
                deltas.add(index=event.index, id=event.id, name=event.name, arguments=event.arguments)
            elif event.kind == "finish":
                finish = event
        if finish is not None:
            used = finish.usage.as_dict() if finish.usage else {}
            tracing.set_attributes(
                span,
                {
                    "gen_ai.response.model": getattr(finish, "model_resolved", None),
                    "gen_ai.provider.name": getattr(finish, "provider", None),
                    "gen_ai.usage.input_tokens": used.get("prompt_tokens"),
                    "gen_ai.usage.output_tokens": used.get("completion_tokens"),
                    "gen_ai.response.finish_reasons": [finish.finish_reason or "stop"],
                },
            )
    step.raw_text = step.text = "".join(step_text)
    step.calls = [PendingCall(id=c.id, function_name=c.name, arguments_text=c.arguments) for c in deltas.calls()]
    if turn.text_mode:
        # In this mode a step's text goes out once the step is over, so no TOOL: line leaks.
        step.text, parsed = parse_text_tool_calls(step.raw_text)
        if not step.last:
            step.calls = [
                PendingCall(id=f"call_{uuid.uuid4().hex[:12]}", function_name=tool_id, arguments_text=args, tool_id=tool_id)
                for tool_id, args in parsed
            ]
        if step.text:
            yield TextDelta(step.number, step.text)
    if step.text.strip():
        turn.reply_parts.append(step.text.strip())
    step.usage = finish.usage.as_dict() if finish is not None and finish.usage else {}
    add_usage(turn.usage, step.usage)
    turn.finish_reason = (finish.finish_reason if finish is not None else "") or "stop"
    step.provider, step.model = getattr(finish, "provider", ""), getattr(finish, "model_resolved", "")


async def _name_calls(turn: _Turn, step: _Step) -> AsyncIterator[Event]:
    """Gives each call a turn-unique id and the tool it names, and announces it."""
    for call in step.calls:
        # Call ids must be unique in the turn (the stream and the transcript are keyed by
        # them); some upstreams number calls per response.
        if call.id in turn.seen_call_ids:
            call.id = f"{call.id}-{step.number}-{len(turn.seen_call_ids)}"
        turn.seen_call_ids.add(call.id)
        if not call.tool_id:
            call.tool_id = turn.names.get(call.function_name, "")
        if not call.tool_id:
            # Not offered to this agent (or created a moment ago): find which tool it names
            # so toolcore can refuse or run it properly, and audit the attempt.
            if turn.all_names is None:
                turn.all_names = (await registry_snapshot.aget(recheck=True)).tool_for_function
            call.tool_id = turn.all_names.get(call.function_name, call.function_name)
        parse_arguments(call)
        yield ToolInputStarted(step.number, call.id, call.tool_id)
        yield ToolInputAvailable(step.number, call.id, call.tool_id, call.function_name, call.arguments)


async def _act(turn: _Turn, step: _Step) -> AsyncIterator[ToolOutput]:
    """Runs the step's calls through toolcore, one after another (the last step refuses them)."""
    blueprint = turn.prepared.blueprint
    for call in step.calls:
        if step.last:
            output = ToolOutput(
                step.number,
                call.id,
                call.tool_id,
                False,
                error=f"the agent's limit of {blueprint.max_tool_steps} tool steps was reached",
                error_type="tool_steps_exhausted",
            )
        else:
            output = await run_tool(turn.prepared, call, step.number)
        turn.tool_log.append(output)
        yield output


def _feed_back(turn: _Turn, step: _Step, outputs: list[ToolOutput]) -> None:
    """The step's answer and its tool results, as the next model call reads them."""
    if turn.text_mode:
        turn.messages.append({"role": "assistant", "content": step.raw_text})
        results = "\n".join(
            f"TOOL RESULT {o.tool_id}: {tool_message_content(o)}"
            if o.ok
            else f"TOOL ERROR {o.tool_id}: {tool_message_content(o)}"
            for o in outputs
        )
        turn.messages.append({"role": "user", "content": results})
        return
    turn.messages.append(
        {
            "role": "assistant",
            "content": step.text or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.function_name, "arguments": c.arguments_text or "{}"}}
                for c in step.calls
            ],
        }
    )
    for output in outputs:
        turn.messages.append({"role": "tool", "tool_call_id": output.call_id, "content": tool_message_content(output)})


async def turn_events(prepared: PreparedTurn) -> AsyncGenerator[Event, None]:
    """Runs the turn, yielding events; never raises a DaarionError (it becomes TurnFailed)."""
    blueprint = prepared.blueprint
    yield TurnStarted(prepared.turn_id, blueprint.id, blueprint.version, prepared.session_id)
    try:
        memories, recall_error = await _recall(prepared)
        yield MemoriesRecalled([m.id for m in memories], recall_error)
        turn = await _begin(prepared, memories)
        for number in range(blueprint.max_tool_steps + 1):
            step = _Step(number=number, last=number == blueprint.max_tool_steps)
            yield StepStarted(number)
            async for event in _think(turn, step):
                yield event
            async for event in _name_calls(turn, step):
                yield event
            outputs = []
            async for output in _act(turn, step):
                outputs.append(output)
                yield output
            yield StepFinished(number, step.usage, turn.finish_reason, step.provider, step.model)
            prepared.transcript.append(assistant_entry(prepared, step.text, step.calls))
            prepared.step_text = []
            if not step.calls or step.last:
                break
            _feed_back(turn, step, outputs)
            prepared.transcript.append(tool_results_entry(prepared, outputs))
        reply = "\n\n".join(turn.reply_parts).strip()
        with tracing.span("agent.remember", {"gen_ai.agent.id": blueprint.id}):
            memory_id = await remember(prepared, reply, turn.tool_log, prepared.transcript)
        yield TurnFinished(reply, turn.usage, memory_id, turn.finish_reason)
    except DaarionError as exc:
        yield TurnFailed(exc)
