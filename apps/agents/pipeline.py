"""The agent turn: recall memories -> call the agent's model (LLM gateway, in-process) ->
run its tool calls through toolcore and feed the results back, up to the agent's step limit
-> answer -> remember the exchange and append it to the session transcript.

`turn_prepare` does every check that must fail the request itself (unknown agent, not
loaded, session of another agent) and raises; `turn_events` then runs the turn as a stream
of events, which `stream.py` renders as the AI SDK UI message stream and `turn_collect`
folds into the JSON answer. Errors once the turn runs become a `TurnFailed` event, so a
stream can report them in-band.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

from apps.agents.choices import ToolMode
from apps.agents.runtime import loaded_blueprint
from apps.agents.selectors import Blueprint
from apps.llm.gateway import credentials_from_secrets, stream_chat_completion
from apps.memory.search import amemory_query
from apps.memory.services import amemory_store, transcript_append
from apps.tools.registry import registry_snapshot
from apps.tools.selectors import aopenai_tools_for_agent, atools_for_agent
from apps.tools.services import tool_call
from daarion.errors import Conflict, DaarionError, NotFound

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A tool result is fed back to the model (and stored) at most this long, so one chatty tool
# cannot blow the context window.
MAX_TOOL_RESULT_CHARS = 8_000
MAX_CONTEXT_MESSAGES = 50
# The seed's convention for models without tool calling: `TOOL: projects.list {"a": 1}`.
TEXT_TOOL_LINE = re.compile(r"^\s*TOOL:\s*([A-Za-z0-9_.:-]{1,128})\s*(\{.*\})?\s*$")


# --- input and events --------------------------------------------------------------------


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
    TurnStarted | MemoriesRecalled | StepStarted | TextDelta | ToolInputStarted | ToolInputAvailable | ToolOutput
    | StepFinished | TurnFinished | TurnFailed
)


# --- preparing ---------------------------------------------------------------------------


def in_db_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`fn` (sync ORM code) as a coroutine function run in an executor thread that gives its
    database connection back afterwards (to the pool with DATABASE_POOL): executor threads
    outlive the call and would otherwise each hold a connection, idle, for hours."""

    def _run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return sync_to_async(_run, thread_sensitive=False)


def _session_owner(session_id: str) -> str | None:
    from apps.memory.selectors import transcript_get

    try:
        return transcript_get(session_id=session_id).agent_id
    except NotFound:
        return None


async def turn_prepare(turn: TurnInput, *, turn_id: str | None = None) -> PreparedTurn:
    """Checks that may refuse the turn outright: 404 unknown agent, 409 not loaded, disabled,
    or a session that belongs to another agent."""
    blueprint = await loaded_blueprint(turn.agent_id)
    if turn.session_id:
        owner = await in_db_thread(_session_owner)(turn.session_id)
        if owner is not None and owner != blueprint.id:
            raise Conflict(
                f"session {turn.session_id!r} belongs to another agent",
                type="session_agent_mismatch",
                details={"session_id": turn.session_id},
            )
    return PreparedTurn(
        turn=turn,
        blueprint=blueprint,
        turn_id=turn_id or f"turn-{uuid.uuid4().hex}",
        session_id=turn.session_id or f"sess-{uuid.uuid4().hex}",
        microdao_id=turn.microdao_id or blueprint.microdao_id,
    )


# --- the prompt --------------------------------------------------------------------------


def _lines(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values] if values.strip() else []
    if isinstance(values, list):
        return [str(v) for v in values if isinstance(v, str) and v.strip()]
    return []


def character_prompt(blueprint: Blueprint) -> str:
    """The character document as prompt text (elizaOS fields the model can use)."""
    c = blueprint.character or {}
    parts: list[str] = [f"You are {blueprint.name}."]
    for title, key in (("About you", "bio"), ("Your background", "lore"), ("Topics you know", "topics")):
        lines = _lines(c.get(key))
        if lines:
            parts.append(f"{title}:\n" + "\n".join(f"- {line}" for line in lines))
    adjectives = _lines(c.get("adjectives"))
    if adjectives:
        parts.append("You are " + ", ".join(adjectives) + ".")
    style = c.get("style") if isinstance(c.get("style"), dict) else {}
    style_lines = _lines(style.get("all")) + _lines(style.get("chat"))
    if style_lines:
        parts.append("Style:\n" + "\n".join(f"- {line}" for line in style_lines))
    examples = c.get("messageExamples") if isinstance(c.get("messageExamples"), list) else []
    rendered = []
    for exchange in examples[:3]:
        if not isinstance(exchange, list):
            continue
        rendered.append(
            "\n".join(
                f"{m.get('user') or m.get('name') or 'user'}: {(m.get('content') or {}).get('text', '')}"
                for m in exchange
                if isinstance(m, dict)
            )
        )
    if rendered:
        parts.append("Example exchanges:\n" + "\n\n".join(rendered))
    return "\n\n".join(parts)


def _text_tools_prompt(tools: list[Any]) -> str:
    described = "\n".join(
        f"- {t.id}: {t.description or t.name}. Input JSON schema: {json.dumps(t.input_schema, ensure_ascii=False)}"
        for t in tools
    )
    return (
        "You can use these tools:\n"
        f"{described}\n"
        "To use one, answer with a line of its own: TOOL: <tool id> {<JSON arguments>}\n"
        "and nothing else; the result comes back in the next message. Answer normally when you need no tool."
    )


def build_messages(
    prepared: PreparedTurn, memories: list[Any], text_tools: list[Any] | None
) -> list[dict[str, Any]]:
    turn, blueprint = prepared.turn, prepared.blueprint
    system = [part for part in (blueprint.system_prompt.strip(), character_prompt(blueprint)) if part]
    # One id per line with nothing after it: a model (or the stub) copying an id into tool
    # arguments must not pick up punctuation with it.
    where = [f"- microDAO: {prepared.microdao_id}"]
    if turn.channel_id:
        where.append(f"- channel: {turn.channel_id}")
    if turn.user_id:
        where.append(f"- user: {turn.user_id}")
    system.append("Context:\n" + "\n".join(where))
    if memories:
        system.append(
            "What you remember (most relevant first):\n"
            + "\n".join(f"- [{m.kind}] {m.content}" for m in memories)
        )
    if turn.context:
        recent = turn.context[-MAX_CONTEXT_MESSAGES:]
        system.append(
            "Recent messages in this channel (oldest first):\n"
            + "\n".join(f"{m.get('author') or m.get('role', 'user')}: {m.get('content', '')}" for m in recent)
        )
    if text_tools:
        system.append(_text_tools_prompt(text_tools))
    return [
        {"role": "system", "content": "\n\n".join(system)},
        *prepared.history,
        {"role": "user", "content": turn.message},
    ]


# --- tool calls --------------------------------------------------------------------------


@dataclass
class _Call:
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


def _parse_arguments(call: _Call) -> None:
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


def _tool_message_content(output: ToolOutput) -> str:
    if output.ok:
        return _clip(output.result)
    # The model is told plainly that the call failed or was refused, so it can answer anyway.
    return _clip({"error": output.error, "error_type": output.error_type, "tool_id": output.tool_id})


async def _run_tool(prepared: PreparedTurn, call: _Call, step: int) -> ToolOutput:
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


# --- the turn ----------------------------------------------------------------------------


def _add_usage(total: dict[str, int], usage: dict[str, int]) -> None:
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[name] = total.get(name, 0) + int(usage.get(name, 0) or 0)


async def _recall(prepared: PreparedTurn) -> tuple[list[Any], str | None]:
    blueprint = prepared.blueprint
    if blueprint.memory_recall_limit <= 0:
        return [], None
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
        return [], message
    return hits, None


async def turn_events(prepared: PreparedTurn) -> AsyncIterator[Event]:
    """Runs the turn, yielding events; never raises a DaarionError (it becomes TurnFailed)."""
    blueprint, turn = prepared.blueprint, prepared.turn
    yield TurnStarted(prepared.turn_id, blueprint.id, blueprint.version, prepared.session_id)
    try:
        memories, recall_error = await _recall(prepared)
        yield MemoriesRecalled([m.id for m in memories], recall_error)

        text_mode = blueprint.tool_mode == ToolMode.TEXT
        offered, names = await aopenai_tools_for_agent(blueprint.id)
        text_tools = await atools_for_agent(blueprint.id) if text_mode else None
        if blueprint.max_tool_steps == 0:
            offered, text_tools = [], None
        messages = build_messages(prepared, memories, text_tools)
        # The agent's own provider keys (secrets named <PROVIDER>_API_KEY) for its model calls.
        credentials = await credentials_from_secrets(blueprint.secrets)
        all_names: dict[str, str] | None = None
        usage_total: dict[str, int] = {}
        reply_parts: list[str] = []
        tool_log: list[ToolOutput] = []
        transcript = prepared.transcript
        transcript[:] = [_entry("user", prepared, {"role": "user", "content": turn.message})]
        finish_reason = "stop"
        seen_call_ids: set[str] = set()

        for step in range(blueprint.max_tool_steps + 1):
            # The last step offers no tools: the model must answer with what it has.
            last_step = step == blueprint.max_tool_steps
            yield StepStarted(step)
            step_text: list[str] = []
            prepared.step_text = step_text
            pending: dict[int, _Call] = {}
            finish: Any = None
            async for event in stream_chat_completion(
                model=blueprint.model,
                messages=messages,
                agent_id=blueprint.id,
                microdao_id=prepared.microdao_id,
                channel_id=turn.channel_id,
                tools=None if (text_mode or last_step or not offered) else offered,
                temperature=blueprint.temperature,
                request_id=turn.request_id,
                credentials=credentials,
            ):
                if event.type == "text":
                    step_text.append(event.text)
                    if not text_mode:
                        yield TextDelta(step, event.text)
                elif event.type == "tool_call":
                    call = pending.get(event.index)
                    if call is None:
                        call = pending[event.index] = _Call(id=event.id or f"call_{uuid.uuid4().hex[:12]}",
                                                            function_name=event.name, arguments_text="")
                    elif event.name and not call.function_name:
                        call.function_name = event.name
                    call.arguments_text += event.arguments
                elif event.type == "finish":
                    finish = event
            text = "".join(step_text)
            calls = [pending[i] for i in sorted(pending)]
            if text_mode:
                text, parsed = parse_text_tool_calls(text)
                if not last_step:
                    calls = [
                        _Call(id=f"call_{uuid.uuid4().hex[:12]}", function_name=tool_id, arguments_text=args, tool_id=tool_id)
                        for tool_id, args in parsed
                    ]
                if text:
                    yield TextDelta(step, text)
            if text.strip():
                reply_parts.append(text.strip())
            step_usage = dict(finish.usage) if finish is not None else {}
            _add_usage(usage_total, step_usage)
            finish_reason = (finish.finish_reason if finish is not None else "") or "stop"

            for call in calls:
                # Call ids must be unique in the turn (the stream and the transcript are
                # keyed by them); some upstreams number calls per response.
                if call.id in seen_call_ids:
                    call.id = f"{call.id}-{step}-{len(seen_call_ids)}"
                seen_call_ids.add(call.id)
                if not call.tool_id:
                    call.tool_id = names.get(call.function_name, "")
                if not call.tool_id:
                    # Not offered to this agent (or created a moment ago): find which tool it
                    # names so toolcore can refuse or run it properly, and audit the attempt.
                    if all_names is None:
                        all_names = (await registry_snapshot.aget(recheck=True)).tool_for_function
                    call.tool_id = all_names.get(call.function_name, call.function_name)
                _parse_arguments(call)
                yield ToolInputStarted(step, call.id, call.tool_id)
                yield ToolInputAvailable(step, call.id, call.tool_id, call.function_name, call.arguments)

            outputs: list[ToolOutput] = []
            for call in calls:
                if last_step:
                    output = ToolOutput(step, call.id, call.tool_id, False,
                                        error=f"the agent's limit of {blueprint.max_tool_steps} tool steps was reached",
                                        error_type="tool_steps_exhausted")
                else:
                    output = await _run_tool(prepared, call, step)
                outputs.append(output)
                tool_log.append(output)
                yield output

            yield StepFinished(step, step_usage, finish_reason, getattr(finish, "provider", ""),
                               getattr(finish, "model_resolved", ""))
            transcript.append(_assistant_entry(prepared, text, calls))
            prepared.step_text = []
            if not calls or last_step:
                break
            if text_mode:
                messages.append({"role": "assistant", "content": "".join(step_text)})
                results = "\n".join(
                    f"TOOL RESULT {o.tool_id}: {_tool_message_content(o)}" if o.ok
                    else f"TOOL ERROR {o.tool_id}: {_tool_message_content(o)}"
                    for o in outputs
                )
                messages.append({"role": "user", "content": results})
            else:
                messages.append(
                    {
                        "role": "assistant",
                        "content": text or None,
                        "tool_calls": [
                            {"id": c.id, "type": "function",
                             "function": {"name": c.function_name, "arguments": c.arguments_text or "{}"}}
                            for c in calls
                        ],
                    }
                )
                for output in outputs:
                    messages.append({"role": "tool", "tool_call_id": output.call_id, "content": _tool_message_content(output)})
            transcript.append(_tool_results_entry(prepared, outputs))

        reply = "\n\n".join(reply_parts).strip()
        memory_id = await _remember(prepared, reply, tool_log, transcript)
        yield TurnFinished(reply, usage_total, memory_id, finish_reason)
    except DaarionError as exc:
        yield TurnFailed(exc)


# --- remembering -------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _entry(kind: str, prepared: PreparedTurn, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "uuid": str(uuid.uuid4()),
        "parentUuid": None,  # linked in order when the turn is written
        "sessionId": prepared.session_id,
        "timestamp": _now(),
        "turnId": prepared.turn_id,
        "agentId": prepared.blueprint.id,
        "message": message,
    }


def _assistant_entry(prepared: PreparedTurn, text: str, calls: list[_Call]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": c.id, "name": c.tool_id, "input": c.arguments} for c in calls]
    return _entry("assistant", prepared, {"role": "assistant", "content": content})


def _tool_results_entry(prepared: PreparedTurn, outputs: list[ToolOutput]) -> dict[str, Any]:
    content = [
        {"type": "tool_result", "tool_use_id": o.call_id, "content": _tool_message_content(o), "is_error": not o.ok}
        for o in outputs
    ]
    return _entry("user", prepared, {"role": "user", "content": content})


def _append_transcript(prepared: PreparedTurn, entries: list[dict[str, Any]]) -> None:
    from apps.memory.selectors import transcript_get

    try:
        existing = transcript_get(session_id=prepared.session_id).entries
    except NotFound:
        existing = []
    parent = next((e.get("uuid") for e in reversed(existing) if e.get("uuid")), None)
    for entry in entries:
        entry["parentUuid"] = parent
        parent = entry["uuid"]
    transcript_append(session_id=prepared.session_id, agent_id=prepared.blueprint.id, entries=entries)


async def _remember(
    prepared: PreparedTurn, reply: str, tools: list[ToolOutput], transcript: list[dict[str, Any]]
) -> str | None:
    """One `conversation` memory and one transcript append per turn (the idempotency key is
    the turn id). A failure here is logged, not raised: the user has the answer already."""
    blueprint, turn = prepared.blueprint, prepared.turn
    memory_id = None
    try:
        entry, _ = await amemory_store(
            agent_id=blueprint.id,
            microdao_id=prepared.microdao_id,
            channel_id=turn.channel_id,
            kind="conversation",
            content={
                "user_message": turn.message,
                "agent_reply": reply,
                "tool_calls": [{"tool_id": t.tool_id, "ok": t.ok} for t in tools],
            },
            meta={
                "source": f"channel:{turn.channel_id}" if turn.channel_id else "agent-chat",
                "session_id": prepared.session_id,
                "turn_id": prepared.turn_id,
                "user_id": turn.user_id,
                "agent_version": blueprint.version,
            },
            idempotency_key=prepared.turn_id,
        )
        memory_id = str(entry.id)
    except Exception:  # noqa: BLE001 - the user has the answer already; log, do not fail the turn
        logger.warning("could not store the turn's memory", extra={"agent_id": blueprint.id}, exc_info=True)
    try:
        await in_db_thread(_append_transcript)(prepared, transcript)
    except Exception:  # noqa: BLE001 - as above
        logger.warning("could not append the transcript", extra={"agent_id": blueprint.id}, exc_info=True)
    return memory_id


# --- partial turns ----------------------------------------------------------------------


async def remember_partial(prepared: PreparedTurn) -> None:
    """A turn stopped before its end (a cancelled run): the steps done so far and the text of
    the step in progress go to the transcript, so the session's next turn sees them. No
    memory is written: a cut answer is not something the agent should recall as said."""
    entries = list(prepared.transcript)
    partial = "".join(prepared.step_text).strip()
    if partial:
        entries.append(_assistant_entry(prepared, partial, []))
    if not entries:
        return
    await in_db_thread(_append_transcript)(prepared, entries)


# --- the JSON answer ---------------------------------------------------------------------


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
                "id": event.call_id, "tool_id": event.tool_id, "function_name": event.function_name,
                "arguments": event.arguments, "step": event.step, "ok": False,
            }
        elif isinstance(event, ToolOutput):
            self.calls[event.call_id].update(ok=event.ok, result=event.result, error=event.error, error_type=event.error_type)
        elif isinstance(event, StepFinished):
            self.steps.append({"step": event.step, "model": event.model, "provider": event.provider,
                               "finish_reason": event.finish_reason, "usage": event.usage})
        elif isinstance(event, TurnFinished):
            self.out = {"reply": event.reply, "usage": event.usage, "stored_memory_id": event.stored_memory_id}
        elif isinstance(event, TurnFailed):
            self.error = event.error

    def result(self, *, reply: str = "") -> dict[str, Any]:
        usage: dict[str, int] = {}
        for step in self.steps:
            _add_usage(usage, step["usage"])
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
