"""manage.py agent_chat AGENT_ID: talk to an agent in the terminal.

Each message is a run, like POST /internal/agents/{id}/chat: queued for the workers of the
`agents` queue (`make run` starts them), its chunks followed from Redis and printed as they
come (the reply as it streams, each tool call as it happens). Ctrl-C stops following, not
the run: `--resume RUN_ID` prints it from the start and carries on in its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.agents.models import Run
from apps.agents.pipeline import TurnInput, turn_prepare
from apps.agents.runs.chunks import chunks_follow
from apps.agents.runs.message import replay_chunks
from apps.agents.runs.selectors import run_get
from apps.agents.runs.services import run_start
from apps.agents.selectors import blueprints_all
from daarion.infra.errors import DaarionError

# Seconds without a chunk after which the command looks at the run's row (and says when it
# waits for a worker); how often it checks for Ctrl-C while the run is quiet.
WAITING_HINT_SECONDS = 5.0
POLL_SECONDS = 0.25


# Libraries that narrate at INFO (the local embedding model's loading, HTTP clients): their
# lines would land in the middle of the chat.
NOISY_LOGGERS = (
    "sentence_transformers",
    "transformers",
    "huggingface_hub",
    "torch",
    "httpx",
    "httpcore",
    "urllib3",
    "filelock",
    "celery",
    "kombu",
    "apps",
    "daarion",
)


def quiet_library_logs() -> None:
    """Keeps library log lines out of the terminal chat; warnings and errors still show."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = logging.getLogger()
    root.setLevel(max(root.level, logging.WARNING))
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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
        parser.add_argument("--resume", metavar="RUN_ID", help="print this run from its start, then go on in its session")

    def handle(self, *args, agent_id: str, message: list[str] | None, resume: str | None, **opts: Any) -> None:
        self.opts = opts
        if opts.get("verbosity", 1) < 2:  # -v 2 shows every log line
            quiet_library_logs()
        self.agent_id = agent_id
        self.session_id = opts["session_id"] or f"sess-cli-{uuid.uuid4().hex[:12]}"
        blueprint = blueprints_all().get(agent_id)
        self.agent_name = blueprint.name if blueprint is not None else agent_id
        failed = False
        if resume:
            try:
                run = run_get(run_id=resume)
            except DaarionError as exc:
                raise CommandError(f"{exc.type}: {exc.message}") from exc
            if run.agent_id != agent_id:
                raise CommandError(f"run {resume} is a run of {run.agent_id}, not of {agent_id}")
            self.session_id = run.session_id
            failed = not self._follow(run)
            if message is None and not sys.stdin.isatty():
                return
        messages = message or None
        if messages is None:
            self.stdout.write(f"Chatting with {agent_id} (session {self.session_id}); Ctrl-D to end.")
        for text in messages if messages is not None else self._prompt():
            if not text.strip():
                continue
            failed = not self._turn(text) or failed
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

    def _turn(self, text: str) -> bool:
        turn = TurnInput(
            agent_id=self.agent_id,
            message=text,
            microdao_id=self.opts["microdao_id"],
            channel_id=self.opts["channel_id"],
            session_id=self.session_id,
            user_id=self.opts["user_id"],
            request_id=f"cli-{uuid.uuid4().hex[:12]}",
        )
        try:
            prepared = asyncio.run(turn_prepare(turn, check_session=False))  # run_start checks it
            run, _ = run_start(
                agent_id=self.agent_id,
                session_id=prepared.session_id,
                strategy="enqueue",
                request={
                    "message": text,
                    "microdao_id": prepared.microdao_id,
                    "channel_id": turn.channel_id,
                    "user_id": turn.user_id,
                    "context": [],
                },
                request_id=turn.request_id or "",
                token_name="manage.py agent_chat",
            )
        except DaarionError as exc:
            self.stderr.write(f"error ({exc.type}): {exc.message}")
            return False
        return self._follow(run)

    def _follow(self, run: Run) -> bool:
        try:
            return asyncio.run(self._print_run(run))
        except KeyboardInterrupt:
            self.stdout.write("")
            self.stdout.write(f"  (run {run.pk} goes on; see it with: manage.py agent_chat {run.agent_id} --resume {run.pk})")
            raise CommandError("interrupted") from None

    async def _print_run(self, run: Run) -> bool:
        # Ctrl-C is ours to handle: it stops following (the run goes on), whatever await it
        # lands in; a Redis read that swallowed a cancel would otherwise finish the run first.
        interrupted = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
        self.name = getattr(self, "agent_name", None) or run.agent_id
        self.at_line_start = True
        self.tool_names: dict[str | None, str | None] = {}  # toolCallId -> toolName, as the chunks carry them
        ok = True
        waited = 0.0
        async for entry in chunks_follow(run.pk, idle_seconds=POLL_SECONDS):
            if interrupted.is_set():
                raise KeyboardInterrupt
            if entry.idle:
                waited += POLL_SECONDS
                if waited >= WAITING_HINT_SECONDS:
                    waited = 0.0
                    # No worker yet, or a stream that expired (an old run): its row says which.
                    fresh = await sync_to_async(run_get)(run_id=run.pk)
                    if fresh.ended and fresh.message is not None:
                        for chunk in replay_chunks(fresh.message):
                            ok = self._print_chunk(chunk) and ok
                        return ok and fresh.status == "succeeded"
                    if fresh.status == "queued":
                        self.stderr.write(f"  (run {run.pk} waits for a worker of the 'agents' queue)")
                continue
            if entry.end:
                break
            ok = self._print_chunk(entry.chunk or {}) and ok
        return ok

    def _print_chunk(self, chunk: dict[str, Any]) -> bool:
        kind = chunk.get("type")
        if kind == "message-metadata":
            recalled = (chunk.get("messageMetadata") or {}).get("memory_ids") or []
            if recalled:
                self.stdout.write(f"  (recalled {len(recalled)} memories)")
        elif kind == "text-delta":
            if self.at_line_start:
                self.stdout.write(f"{self.name}> ", ending="")
                self.at_line_start = False
            self.stdout.write(chunk.get("delta", ""), ending="")
            self.stdout.flush()
        elif kind in ("text-end", "start-step"):
            if not self.at_line_start:
                self.stdout.write("")
                self.at_line_start = True
        elif kind == "tool-input-available":
            self.tool_names[chunk.get("toolCallId")] = chunk.get("toolName")
            self.stdout.write(f"  -> tool {chunk.get('toolName')} {_short(chunk.get('input'))}")
        elif kind == "tool-output-available":
            self.stdout.write(f"  <- {self.tool_names.get(chunk.get('toolCallId'))} ok: {_short(chunk.get('output'))}")
        elif kind == "tool-output-error":
            name = self.tool_names.get(chunk.get("toolCallId"))
            self.stdout.write(f"  <- {name} failed: {_short(chunk.get('errorText'))}")
        elif kind == "finish":
            meta = chunk.get("messageMetadata") or {}
            usage = (meta.get("usage") or {}).get("total_tokens", 0)
            if meta.get("finish_reason") in ("cancelled", "interrupted"):
                self.stdout.write(f"  (run {meta['finish_reason']})")
            else:
                self.stdout.write(f"  ({usage} tokens; memory {meta.get('stored_memory_id') or 'not stored'})")
        elif kind == "error":
            self.stderr.write(f"error ({chunk.get('errorText')})")
            return False
        return True
