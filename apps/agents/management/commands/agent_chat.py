"""manage.py agent_chat AGENT_ID: talk to an agent in the terminal, in-process.

Runs the same turn pipeline as POST /internal/agents/{id}/chat (memory, LLM gateway,
toolcore), printing the reply as it streams and each tool call as it happens. One session
per run, so the agent's transcript holds the whole conversation.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.agents.pipeline import (
    MemoriesRecalled,
    StepStarted,
    TextDelta,
    ToolInputAvailable,
    ToolOutput,
    TurnFailed,
    TurnFinished,
    TurnInput,
    turn_events,
    turn_prepare,
)
from daarion.errors import DaarionError


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class Command(BaseCommand):
    help = "Chat with an agent in the terminal (streams the reply, shows tool calls). Ctrl-D ends."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("--microdao", dest="microdao_id", help="defaults to the agent's microDAO")
        parser.add_argument("--channel", dest="channel_id", default="channel:terminal")
        parser.add_argument("--session", dest="session_id", help="continue this transcript")
        parser.add_argument("--user", dest="user_id", default="user:terminal")
        parser.add_argument("--message", "-m", action="append", help="send this (repeatable) and exit")

    def handle(self, *args, agent_id: str, message: list[str] | None, **opts: Any) -> None:
        self.opts = opts
        self.session_id = opts["session_id"] or f"sess-cli-{uuid.uuid4().hex[:12]}"
        messages = message or None
        if messages is None:
            self.stdout.write(f"Chatting with {agent_id} (session {self.session_id}); Ctrl-D to end.")
        failed = False
        for text in messages if messages is not None else self._prompt():
            if not text.strip():
                continue
            failed = not asyncio.run(self._turn(agent_id, text)) or failed
        if failed and messages is not None:
            raise CommandError("a turn failed")

    def _prompt(self):
        while True:
            self.stdout.write("you> ", ending="")
            self.stdout.flush()
            line = sys.stdin.readline()
            if not line:
                self.stdout.write("")
                return
            yield line.rstrip("\n")

    async def _turn(self, agent_id: str, text: str) -> bool:
        turn = TurnInput(
            agent_id=agent_id, message=text, microdao_id=self.opts["microdao_id"], channel_id=self.opts["channel_id"],
            session_id=self.session_id, user_id=self.opts["user_id"], request_id=f"cli-{uuid.uuid4().hex[:12]}",
        )
        try:
            prepared = await turn_prepare(turn)
        except DaarionError as exc:
            self.stderr.write(f"error ({exc.type}): {exc.message}")
            return False
        name = prepared.blueprint.name
        at_line_start = True
        async for event in turn_events(prepared):
            if isinstance(event, MemoriesRecalled) and event.memory_ids:
                self.stdout.write(f"  (recalled {len(event.memory_ids)} memories)")
            elif isinstance(event, StepStarted) and event.step:
                at_line_start = True
            elif isinstance(event, TextDelta):
                if at_line_start:
                    self.stdout.write(f"{name}> ", ending="")
                    at_line_start = False
                self.stdout.write(event.text, ending="")
                self.stdout.flush()
            elif isinstance(event, ToolInputAvailable):
                if not at_line_start:
                    self.stdout.write("")
                    at_line_start = True
                self.stdout.write(f"  -> tool {event.tool_id} {_short(event.arguments)}")
            elif isinstance(event, ToolOutput):
                if event.ok:
                    self.stdout.write(f"  <- {event.tool_id} ok: {_short(event.result)}")
                else:
                    self.stdout.write(f"  <- {event.tool_id} failed ({event.error_type}): {_short(event.error)}")
            elif isinstance(event, TurnFinished):
                if not at_line_start:
                    self.stdout.write("")
                usage = event.usage.get("total_tokens", 0)
                self.stdout.write(f"  ({usage} tokens; memory {event.stored_memory_id or 'not stored'})")
            elif isinstance(event, TurnFailed):
                if not at_line_start:
                    self.stdout.write("")
                self.stderr.write(f"error ({event.error.type}): {event.error.message}")
                return False
        return True
