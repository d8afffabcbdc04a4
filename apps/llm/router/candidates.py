"""Which deployments a call may try, in order: the model's, then its fallbacks', weighted,
those cooling down skipped."""

from __future__ import annotations

import random

from apps.llm.router.calls import Attempt, CallContext
from apps.llm.router.cooldown import health, health_subject
from apps.llm.selectors import DeploymentSpec, ModelSpec, Registry, registry_snapshot
from daarion.infra.errors import BadRequest, NotFound


async def fresh_registry(name: str) -> Registry:
    """The snapshot; on a miss for `name`, re-checked at once (a model added a moment ago works)."""
    registry = await registry_snapshot.aget()
    spec = registry.models.get(name)
    if spec is None or not spec.enabled or not spec.deployments:
        registry = await registry_snapshot.aget(recheck=True)
    return registry


def resolve_model(registry: Registry, name: str, *, for_embeddings: bool = False) -> ModelSpec:
    model = registry.models.get(name)
    if model is None:
        raise NotFound(
            f"unknown model {name!r}",
            type="model_not_found",
            details={"model": name, "available": sorted(m for m, spec in registry.models.items() if spec.enabled)},
        )
    if not model.enabled:
        raise NotFound(f"model {name!r} is disabled", type="model_disabled", details={"model": name})
    if for_embeddings and not model.can_embed:
        raise BadRequest(f"model {name!r} does not serve embeddings", type="model_cannot_embed", details={"model": name})
    return model


def model_chain(registry: Registry, model: ModelSpec) -> list[ModelSpec]:
    """The model, then its fallbacks depth-first in order, each once, disabled ones skipped."""
    # A stack, not a recursive closure: a closure that calls itself is a reference cycle per
    # call, garbage only the cyclic collector frees (this runs on every routed call).
    chain: list[ModelSpec] = []
    seen: set[str] = set()
    stack = [model]
    while stack:
        spec = stack.pop()
        if spec.name in seen:
            continue
        seen.add(spec.name)
        chain.append(spec)
        nexts = [registry.models.get(name) for name in spec.fallbacks]
        stack.extend(reversed([n for n in nexts if n is not None and n.enabled]))
    return chain


def weighted_order(deployments: tuple[DeploymentSpec, ...]) -> list[DeploymentSpec]:
    """A weighted random order without replacement: the first is picked by weight, the rest
    follow as further choices for retries."""
    pool = list(deployments)
    order: list[DeploymentSpec] = []
    while pool:
        pick = random.choices(range(len(pool)), weights=[d.weight for d in pool])[0]
        order.append(pool.pop(pick))
    return order


async def candidates(
    registry: Registry,
    model: ModelSpec,
    ctx: CallContext | None = None,
) -> tuple[list[tuple[ModelSpec, DeploymentSpec]], list[Attempt]]:
    chain = model_chain(registry, model)
    subjects = {
        d.id: health_subject(d.id, ctx.api_key_for(d.provider.name) if ctx else None) for spec in chain for d in spec.deployments
    }
    cooled = await health.cooled(list(subjects.values()))
    skipped: list[Attempt] = []
    out: list[tuple[ModelSpec, DeploymentSpec]] = []
    for spec in chain:
        for deployment in weighted_order(spec.deployments):
            if subjects[deployment.id] in cooled:
                skipped.append(
                    Attempt(
                        spec.name,
                        deployment.provider.name,
                        deployment.upstream_model,
                        "cooling_down",
                        "skipped: the deployment is cooling down after repeated failures",
                    )
                )
            else:
                out.append((spec, deployment))
    return out, skipped
