"""Before and after the routing loop: a call's rate limits and budgets (admit), and how it
ends: its usage record, refused calls included, and its lease settled (settle_call, settled)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from apps.llm import ratelimit, usage
from apps.llm.choices import UsageStatus
from apps.llm.router.calls import CallContext, ChatCall, Outcome
from apps.llm.router.candidates import model_chain
from apps.llm.selectors import ModelSpec, Registry
from daarion.infra.errors import DaarionError


def usage_record(
    ctx: CallContext,
    outcome: Outcome,
    model: ModelSpec | None,
    *,
    status: str,
    error_type: str = "",
    stream: bool = False,
    endpoint: str | None = None,
) -> dict[str, Any]:
    cost = model.cost(outcome.usage.prompt_tokens, outcome.usage.completion_tokens) if model else 0
    return usage.new_record(
        request_id=ctx.request_id,
        agent_id=ctx.agent_id or "",
        microdao_id=ctx.microdao_id or "",
        channel_id=ctx.channel_id or "",
        endpoint=endpoint or ctx.endpoint,
        logical_model=outcome.model_resolved or outcome.logical_model,
        provider=outcome.provider,
        upstream_model=outcome.upstream_model,
        status=status,
        error_type=error_type,
        latency_ms=round((time.perf_counter() - outcome.started) * 1000, 3),
        ttft_ms=None if outcome.ttft_ms is None else round(outcome.ttft_ms, 3),
        prompt_tokens=outcome.usage.prompt_tokens,
        completion_tokens=outcome.usage.completion_tokens,
        total_tokens=outcome.usage.total_tokens,
        cost=cost,
        stream=stream,
        attempts=0 if status == UsageStatus.REFUSED else max(1, outcome.calls),
    )


def _cost_estimate(registry: Registry, model: ModelSpec, estimate: int, completion: int) -> int:
    """The call's estimated cost in micro-USD, reserved against budgets: its token estimate
    (`completion` of it for the answer) at the highest prices of the model and its fallbacks,
    since any of them may serve it."""
    prompt = max(0, estimate - completion)
    return max(ratelimit.micro_usd(spec.cost(prompt, completion)) for spec in model_chain(registry, model))


async def admit(
    registry: Registry, ctx: CallContext, estimate: int, outcome: Outcome, model: ModelSpec, completion: int
) -> ratelimit.Lease | None:
    buckets = ratelimit.buckets_for(registry, agent_id=ctx.agent_id, microdao_id=ctx.microdao_id)
    # Only a budget needs the cost: the common call skips walking the fallback chain.
    cost = _cost_estimate(registry, model, estimate, completion) if any(b.budget_micro_usd for b in buckets) else 0
    lease = await ratelimit.acquire(buckets, estimate=estimate, cost_estimate=cost)
    if lease is not None:
        outcome.rate_headers = dict(lease.headers)
    return lease


def completion_estimate(call: ChatCall) -> int:
    """The answer's share of estimate_tokens' estimate (its cap, or what it assumes without one)."""
    return call.cap or ratelimit.COMPLETION_ESTIMATE


@contextlib.asynccontextmanager
async def refusals_recorded(
    ctx: CallContext, outcome: Outcome, *, stream: bool = False, endpoint: str | None = None
) -> AsyncIterator[None]:
    """A call refused before routing (unknown or disabled model, a rate limit) still leaves a
    usage record, status `refused` with the error's type, so per-agent accounting shows it."""
    try:
        yield
    except DaarionError as exc:
        usage.emit(
            usage_record(ctx, outcome, None, status=UsageStatus.REFUSED, error_type=exc.type, stream=stream, endpoint=endpoint)
        )
        raise


async def settle_call(
    ctx: CallContext,
    outcome: Outcome,
    lease: ratelimit.Lease | None,
    served: ModelSpec | None,
    *,
    status: str,
    error_type: str = "",
    stream: bool = False,
    endpoint: str | None = None,
) -> None:
    """How every admitted call ends: one usage record, and the lease settled with what it
    really used. Shielded, so a second cancellation cannot leave the slot taken."""
    record = usage_record(ctx, outcome, served, status=status, error_type=error_type, stream=stream, endpoint=endpoint)
    usage.emit(record)
    await asyncio.shield(ratelimit.settle(lease, actual_tokens=outcome.usage.total_tokens, cost_usd=record["cost"]))


@dataclass
class Ending:
    """What `settled` records: the model that served (a fallback's, once one answered)."""

    served: ModelSpec | None


@contextlib.asynccontextmanager
async def settled(
    ctx: CallContext, outcome: Outcome, lease: ratelimit.Lease | None, model: ModelSpec, *, endpoint: str | None = None
) -> AsyncIterator[Ending]:
    """Settles a one-shot call (a completion, an embedding) however its block ends: `ok`,
    the DaarionError's type, or `cancelled` when the client went away."""
    ending = Ending(served=model)
    status, error_type = UsageStatus.ERROR, "internal_error"
    try:
        yield ending
        status, error_type = UsageStatus.OK, ""
    except DaarionError as exc:
        error_type = exc.type
        raise
    except asyncio.CancelledError:
        status, error_type = UsageStatus.CANCELLED, "client_disconnected"
        raise
    finally:
        await settle_call(ctx, outcome, lease, ending.served, status=status, error_type=error_type, endpoint=endpoint)
