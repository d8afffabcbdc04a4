"""The playground's streams: a logical model through the LLM gateway, or an agent as a run.

The same services as /internal/llm/stream and /internal/agents/{id}/chat, under the staff
user's name; the answer is the UI message stream those doors speak, plus a last
`message-metadata` chunk with usage, cost and latency for the page to show.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from apps.agents.pipeline import TurnInput, in_db_thread, turn_prepare
from apps.agents.runs.selectors import arun_get, run_sse
from apps.agents.runs.services import run_start
from apps.llm.gateway import stream_chat_completion
from apps.llm.selectors import registry_snapshot
from daarion.infra import sse
from daarion.infra.errors import DaarionError
from daarion.infra.ui_message_stream import UIMessageStream

PLAYGROUND_CHANNEL = "console:playground"


async def _cost(model: str, usage: dict[str, Any]) -> str | None:
    spec = (await registry_snapshot.aget()).models.get(model)
    if spec is None:
        return None
    cost: Decimal = spec.cost(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return f"{cost:.8f}"


def _summary(*, usage: dict[str, Any], cost: str | None, started: float, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message-metadata",
        "messageMetadata": {
            "console": {"usage": usage, "cost_usd": cost, "latency_ms": round((time.perf_counter() - started) * 1000, 1), **extra}
        },
    }


async def model_stream(*, model: str, message: str, user: str) -> AsyncIterator[bytes]:
    """A logical model's answer as a UI message stream (errors as an `error` chunk)."""
    started = time.perf_counter()
    request_id = f"console-{uuid.uuid4().hex[:16]}"
    ui = UIMessageStream()
    for chunk in [*ui.start(request_id, {"caller": user}), *ui.start_step()]:
        yield sse.event(chunk)
    finish = None
    try:
        async for event in stream_chat_completion(
            model=model, messages=[{"role": "user", "content": message}], channel_id=PLAYGROUND_CHANNEL, request_id=request_id
        ):
            if event.kind == "text":
                for chunk in ui.text(event.text):
                    yield sse.event(chunk)
            elif event.kind == "finish":
                finish = event
    except DaarionError as exc:
        for chunk in ui.error(f"{exc.type}: {exc.message}"):
            yield sse.event(chunk)
        yield sse.DONE
        return
    for chunk in ui.finish_step():
        yield sse.event(chunk)
    usage = finish.usage.as_dict() if finish and finish.usage else {}
    served = (finish.model_resolved if finish else "") or model
    yield sse.event(
        _summary(
            usage=usage,
            cost=await _cost(served, usage),
            started=started,
            request_id=request_id,
            provider=finish.provider if finish else "",
            model=served,
        )
    )
    for chunk in ui.finish({"finish_reason": finish.finish_reason if finish else "stop"}):
        yield sse.event(chunk)
    yield sse.DONE


async def agent_run_start(*, agent_id: str, message: str, session_id: str | None, user: str) -> tuple[str, str]:
    """Starts a run of one turn, as POST /internal/agents/{id}/chat does: (run id, session id).

    Refusals (unknown agent, not loaded, disabled) raise before a run exists."""
    turn = TurnInput(
        agent_id=agent_id,
        message=message,
        channel_id=PLAYGROUND_CHANNEL,
        session_id=session_id or None,
        user_id=user,
        request_id=f"console-{uuid.uuid4().hex[:16]}",
    )
    prepared = await turn_prepare(turn, check_session=False)  # run_start checks it, under its lock
    run, _ = await in_db_thread(run_start)(
        agent_id=agent_id,
        session_id=prepared.session_id,
        strategy="enqueue",
        request={
            "message": message,
            "microdao_id": prepared.microdao_id,
            "channel_id": PLAYGROUND_CHANNEL,
            "user_id": user,
            "context": [],
        },
        request_id=turn.request_id or "",
        token_name=user,
    )
    return run.pk, prepared.session_id


async def agent_stream(*, run_id: str, model: str) -> AsyncIterator[bytes]:
    """The run's stream (as GET /internal/agents/runs/{id}/stream), then the summary chunk."""
    started = time.perf_counter()
    async for event in run_sse(run_id):
        if event == sse.DONE:
            run = await arun_get(run_id=run_id)
            usage = run.usage or {}
            yield sse.event(
                _summary(
                    usage=usage, cost=await _cost(model, usage), started=started, run_id=run_id, status=run.status, model=model
                )
            )
        yield event
