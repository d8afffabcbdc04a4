"""Embeddings, routed through the same loop as chat."""

from __future__ import annotations

from typing import Any

from apps.llm.choices import Endpoint
from apps.llm.providers import BaseProvider, EmbeddingResponse
from apps.llm.router.admission import admit, refusals_recorded, settled
from apps.llm.router.calls import Attempt, CallContext, Outcome
from apps.llm.router.candidates import fresh_registry, resolve_model
from apps.llm.router.loop import Route, record_served, route_call
from apps.llm.selectors import DeploymentSpec, ModelSpec


def _embed_refusal(
    spec: ModelSpec, deployment: DeploymentSpec, client: BaseProvider, *, dimensions: int | None, tokens: bool
) -> Attempt | None:
    """The skip of a deployment that cannot take `dimensions` or token-id input (never dropped:
    either would change what the caller gets back)."""
    if dimensions is not None and not client.embeds_dimensions:
        param, what = "dimensions", "a `dimensions` choice"
    elif tokens and not client.embeds_tokens:
        param, what = "input", "token-id input (send the text instead)"
    else:
        return None
    return Attempt(
        spec.name,
        deployment.provider.name,
        deployment.upstream_model,
        "unsupported_parameter",
        f"model {spec.name!r} (provider kind {deployment.provider.kind!r}) does not take {what}",
        param=param,
    )


async def embed(
    *,
    model_name: str,
    inputs: list[Any],
    ctx: CallContext,
    outcome: Outcome | None = None,
    dimensions: int | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[EmbeddingResponse, Outcome]:
    """`inputs`: strings, or lists of token ids; `params`: further OpenAI embeddings
    parameters (user, unknown keys) for upstreams that take them as sent."""
    outcome = outcome or Outcome(logical_model=model_name)
    tokens = any(not isinstance(item, str) for item in inputs)
    estimate = max(1, sum(len(item) // 4 if isinstance(item, str) else len(item) for item in inputs))
    async with refusals_recorded(ctx, outcome, endpoint=Endpoint.EMBEDDINGS):
        registry = await fresh_registry(model_name)
        model = resolve_model(registry, model_name, for_embeddings=True)
        lease = await admit(registry, ctx, estimate, outcome, model, 0)
    async with settled(ctx, outcome, lease, model, endpoint=Endpoint.EMBEDDINGS) as ending:
        forwarded: dict[str, Any] | None = None

        def refusal(route: Route) -> Attempt | None:
            nonlocal forwarded
            forwarded = params if route.client.accepts is None else None
            return _embed_refusal(route.spec, route.deployment, route.client, dimensions=dimensions, tokens=tokens)

        async def attempt(route: Route) -> EmbeddingResponse:
            return await route.client.embed(
                model=route.deployment.upstream_model,
                inputs=inputs,
                api_key=route.api_key,
                dimensions=dimensions,
                params=forwarded,
            )

        result, route = await route_call(
            registry,
            model,
            ctx,
            outcome,
            estimate,
            attempt,
            eligible=lambda spec: spec.can_embed,
            refusal=refusal,
            served=lambda route, result: record_served(outcome, route.spec, route.deployment, result.usage, "stop"),
        )
        ending.served = route.spec
    return result, outcome
