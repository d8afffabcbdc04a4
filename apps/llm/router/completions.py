"""A non-streamed chat completion, routed."""

from __future__ import annotations


from apps.llm import ratelimit
from apps.llm.providers import ChatResponse, ToolCall
from apps.llm.router.admission import admit, completion_estimate, refusals_recorded, settled
from apps.llm.router.calls import Attempt, CallContext, ChatCall, Outcome, chat_request, fit_params
from apps.llm.router.candidates import fresh_registry, resolve_model
from apps.llm.router.credentials import call_secrets, scrub_answer
from apps.llm.router.loop import Route, record_served, route_call
from apps.llm.router.tool_names import ToolNames
from apps.llm.selectors import ModelSpec, Registry


async def chat(call: ChatCall, ctx: CallContext, outcome: Outcome | None = None) -> tuple[ChatResponse, Outcome]:
    """One non-streamed chat completion, routed. Raises DaarionError subclasses."""
    outcome = outcome or Outcome(logical_model=call.model)
    estimate = ratelimit.estimate_tokens(call.messages, call.cap)
    async with refusals_recorded(ctx, outcome):
        registry = await fresh_registry(call.model)
        model = resolve_model(registry, call.model)
        lease = await admit(registry, ctx, estimate, outcome, model, completion_estimate(call))
    async with settled(ctx, outcome, lease, model) as ending:
        response, ending.served = await _route_chat(registry, model, call, outcome, estimate, ctx)
    return response, outcome


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
