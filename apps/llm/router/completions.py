"""A non-streamed chat completion, routed."""

from __future__ import annotations

import asyncio

from apps.llm import ratelimit, usage
from apps.llm.choices import UsageStatus
from apps.llm.providers import ChatResponse, ToolCall
from apps.llm.router.admission import admit, completion_estimate, refusals_recorded, usage_record
from apps.llm.router.calls import Attempt, CallContext, ChatCall, Outcome, chat_request, fit_params
from apps.llm.router.candidates import fresh_registry, resolve_model
from apps.llm.router.credentials import call_secrets, scrub_answer
from apps.llm.router.loop import Route, record_served, route_call
from apps.llm.router.tool_names import ToolNames
from apps.llm.selectors import ModelSpec, Registry
from daarion.infra.errors import DaarionError


async def chat(call: ChatCall, ctx: CallContext, outcome: Outcome | None = None) -> tuple[ChatResponse, Outcome]:
    """One non-streamed chat completion, routed. Raises DaarionError subclasses."""
    outcome = outcome or Outcome(logical_model=call.model)
    estimate = ratelimit.estimate_tokens(call.messages, call.cap)
    async with refusals_recorded(ctx, outcome):
        registry = await fresh_registry(call.model)
        model = resolve_model(registry, call.model)
        lease = await admit(registry, ctx, estimate, outcome, model, completion_estimate(call))
    status, error_type = UsageStatus.ERROR, "internal_error"
    served_model: ModelSpec | None = model
    try:
        response, served_model = await _route_chat(registry, model, call, outcome, estimate, ctx)
        status, error_type = UsageStatus.OK, ""
        return response, outcome
    except DaarionError as exc:
        error_type = exc.type
        raise
    except asyncio.CancelledError:
        status, error_type = UsageStatus.CANCELLED, "client_disconnected"
        raise
    finally:
        record = usage_record(ctx, outcome, served_model, status=status, error_type=error_type)
        usage.emit(record)
        # Shielded: a second cancellation must not leave the slot taken.
        await asyncio.shield(ratelimit.settle(lease, actual_tokens=outcome.usage.total_tokens, cost_usd=record["cost"]))


async def _route_chat(
    registry: Registry, model: ModelSpec, call: ChatCall, outcome: Outcome, estimate: int, ctx: CallContext
) -> tuple[ChatResponse, ModelSpec]:
    names = ToolNames(call.tools, call.messages)
    request = chat_request(call, names)
    dropped: tuple[str, ...] = ()

    def refusal(route: Route) -> Attempt | None:
        nonlocal dropped
        request.params, dropped, refused = fit_params(call, route.client, route.spec, route.deployment)
        return refused

    async def attempt(route: Route) -> ChatResponse:
        request.model, request.api_key = route.deployment.upstream_model, route.api_key
        return await route.client.chat(request)

    def served(route: Route, response: ChatResponse) -> None:
        record_served(outcome, route.spec, route.deployment, response.usage, response.finish_reason)
        scrub_answer(response, call_secrets(route.deployment, route.api_key))

    response, route = await route_call(registry, model, ctx, outcome, estimate, attempt, refusal=refusal, served=served)
    response.tool_calls = [ToolCall(c.id, names.back(c.name), c.arguments) for c in response.tool_calls]
    for other in response.alternatives:
        other.tool_calls = [ToolCall(c.id, names.back(c.name), c.arguments) for c in other.tool_calls]
    outcome.dropped_params = dropped
    return response, route.spec
