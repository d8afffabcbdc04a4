"""The agent turn: recall memories -> call the agent's model (LLM gateway, in-process) ->
run its tool calls through toolcore and feed the results back, up to the agent's step limit
-> answer -> remember the exchange and append it to the session transcript.

`turn_prepare` (prepare.py) does every check that must fail the request itself and raises;
`turn_events` (turn.py) then runs the turn as a stream of events (events.py), which
`apps/agents/stream.py` renders as the AI SDK UI message stream and `TurnCollector`
(collect.py) folds into the JSON answer. Errors once the turn runs become a `TurnFailed`
event, so a stream can report them in-band. A run's executor (apps/agents/runs) drives it.
"""

from apps.agents.pipeline.collect import TurnCollector
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
    TurnInput,
    TurnStarted,
)
from apps.agents.pipeline.orm import in_db_thread
from apps.agents.pipeline.prepare import turn_prepare
from apps.agents.pipeline.prompt import build_messages, character_prompt
from apps.agents.pipeline.remember import remember_partial
from apps.agents.pipeline.tool_calls import parse_text_tool_calls
from apps.agents.pipeline.turn import turn_events

__all__ = [
    "Event",
    "MemoriesRecalled",
    "PreparedTurn",
    "StepFinished",
    "StepStarted",
    "TextDelta",
    "ToolInputAvailable",
    "ToolInputStarted",
    "ToolOutput",
    "TurnCollector",
    "TurnFailed",
    "TurnFinished",
    "TurnInput",
    "TurnStarted",
    "build_messages",
    "character_prompt",
    "in_db_thread",
    "parse_text_tool_calls",
    "remember_partial",
    "turn_events",
    "turn_prepare",
]
