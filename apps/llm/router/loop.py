"""The one routing loop of every call (chat, streams, embeddings): deployments in order, each
skipped when it cannot serve, retried with backoff, failures turned into the caller's error."""

from __future__ import annotations

import asyncio
import functools
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from apps.llm import ratelimit
from apps.llm.choices import ProviderKind
from apps.llm.providers import BaseProvider, ProviderError, Usage, client_for
from apps.llm.router.calls import Attempt, CallContext, Outcome
from apps.llm.router.candidates import candidates
from apps.llm.router.cooldown import health, health_subject
from apps.llm.router.credentials import scrub_error
from apps.llm.selectors import DeploymentSpec, ModelSpec, Registry
from daarion.infra.errors import (
    BadRequest,
    DaarionError,
    GatewayTimeout,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from daarion.observability import metrics

T = TypeVar("T")


def backoff_delay(attempt: int, retry_after: float | None) -> float | None:
    """Seconds to wait before retrying the same deployment; None: move on instead."""
    if retry_after is not None:
        return retry_after if retry_after <= settings.LLM_MAX_RETRY_AFTER else None
    base = settings.LLM_RETRY_BACKOFF
    return min(base * (2**attempt), 2.0) * (0.5 + random.random() / 2)


# Attempts that never reached the upstream: capacity, not failure (503, not 502).
_SKIPPED = {"cooling_down", "deployment_rate_limited", "no_api_key", "unsupported_parameter"}
# Hosted APIs refuse every call without a key: skip such a deployment without a round trip.
_KEY_REQUIRED = {ProviderKind.OPENAI, ProviderKind.DEEPSEEK, ProviderKind.ANTHROPIC}


def _unusable(spec: ModelSpec, deployment: DeploymentSpec, api_key: str | None = None) -> Attempt | None:
    """`api_key`: the call's own key for this provider, which makes a keyless provider usable."""
    provider = deployment.provider
    if provider.kind in _KEY_REQUIRED and not (api_key or provider.api_key):
        where = f"the environment variable {provider.api_key_env}" if provider.api_key_env else "a key in admin"
        return Attempt(
            spec.name,
            provider.name,
            deployment.upstream_model,
            "no_api_key",
            f"skipped: provider {provider.name!r} has no API key (set {where})",
        )
    return None


def all_failed(model: str, attempts: list[Attempt]) -> DaarionError:
    details = {"model": model, "attempts": [a.as_dict() for a in attempts]}
    tried = [a for a in attempts if a.error_type not in _SKIPPED]
    refused = [a for a in attempts if a.error_type == "unsupported_parameter"]
    if not tried and refused:
        # Every deployment that could have served it cannot take a parameter the caller sent.
        return BadRequest(refused[0].message, type="unsupported_parameter", details={**details, "param": refused[0].param})
    capped = [a for a in attempts if a.error_type == "deployment_rate_limited"]
    if not tried and capped and len(capped) == len(attempts):
        # Every deployment is at its own rpm/tpm cap: a rate limit the caller waits out.
        waits = [a.retry_after for a in capped if a.retry_after is not None]
        return RateLimited(
            f"every deployment of {model!r} is at its own rpm/tpm cap",
            type="deployment_rate_limited",
            details=details,
            headers={"Retry-After": str(max(1, math.ceil(min(waits) if waits else 1)))},
        )
    if not tried:
        message = f"no healthy deployment for model {model!r}"
        if not attempts:
            message = f"model {model!r} has no enabled deployment"
        return ServiceUnavailable(message, type="no_deployment", details=details, headers={"Retry-After": "5"})
    if all(a.error_type == "timeout" for a in tried):
        return GatewayTimeout(f"every deployment of {model!r} timed out", details=details)
    last = tried[-1]
    if last.error_type == "rate_limited":
        # The upstream's own limit outlived retries and fallbacks: the caller should wait as
        # the upstream asked, not treat it as a failure of ours.
        waits = [a.retry_after for a in tried if a.retry_after is not None]
        headers = {"Retry-After": str(max(1, math.ceil(max(waits))))} if waits else {}
        return RateLimited(
            f"every deployment of {model!r} is rate limited upstream; last: {last.message}",
            type="upstream_rate_limited",
            details=details,
            headers=headers,
        )
    return UpstreamError(f"every deployment of {model!r} failed; last: {last.message}", details=details)


def _attempt(spec: ModelSpec, deployment: DeploymentSpec, exc: ProviderError) -> Attempt:
    return Attempt(
        spec.name, deployment.provider.name, deployment.upstream_model, exc.kind, exc.message, exc.status, exc.retry_after
    )


def _bad_request(model: str, attempt: Attempt, attempts: list[Attempt]) -> BadRequest:
    return BadRequest(
        f"upstream rejected the request: {attempt.message}",
        type="upstream_bad_request",
        details={"model": model, "attempts": [a.as_dict() for a in attempts]},
    )


async def _deployment_cap(spec: ModelSpec, deployment: DeploymentSpec, estimate: int) -> ratelimit.Lease | Attempt | None:
    """The deployment's own rpm/tpm cap: a lease, None (no cap), or the skip when it is reached."""
    if not (deployment.rpm_limit or deployment.tpm_limit):
        return None
    bucket = ratelimit.Bucket(f"deployment:{deployment.id}", deployment.rpm_limit, deployment.tpm_limit, None)
    try:
        return await ratelimit.acquire([bucket], estimate=estimate)
    except DaarionError as exc:
        wait = (exc.headers or {}).get("Retry-After")
        return Attempt(
            spec.name,
            deployment.provider.name,
            deployment.upstream_model,
            "deployment_rate_limited",
            "skipped: the deployment's own rpm/tpm cap is reached",
            retry_after=float(wait) if wait else None,
        )


@dataclass
class Route:
    """One deployment the routing loop is trying: its model, the client and the call's key."""

    spec: ModelSpec
    deployment: DeploymentSpec
    client: BaseProvider
    api_key: str | None


async def route_call(
    registry: Registry,
    model: ModelSpec,
    ctx: CallContext,
    outcome: Outcome,
    estimate: int,
    attempt: Callable[[Route], Awaitable[T]],
    *,
    eligible: Callable[[ModelSpec], bool] | None = None,
    refusal: Callable[[Route], Attempt | None] | None = None,
    served: Callable[[Route, T], None] | None = None,
) -> tuple[T, Route]:
    """The routing loop of every call (chat, stream, embeddings): the model's deployments and
    its fallbacks' in order, each skipped when cooling down, without a key, unable to take the
    call (`refusal`) or over its own rpm/tpm cap; else `attempt` with retries and backoff
    (Retry-After honoured) until one answers. Health is told of each outcome; every skip and
    failure lands in `outcome.attempts`, and all_failed() turns them into the caller's error.
    `served` records the answer before the deployment's cap is settled to its real tokens."""
    order, skipped = await candidates(registry, model, ctx)
    outcome.attempts.extend(skipped)
    for spec, deployment in order:
        if eligible is not None and not eligible(spec):
            continue
        api_key = ctx.api_key_for(deployment.provider.name)
        unusable = _unusable(spec, deployment, api_key)
        if unusable is not None:
            outcome.attempts.append(unusable)
            continue
        route = Route(spec, deployment, client_for(deployment.provider), api_key)
        refused = refusal(route) if refusal is not None else None
        if refused is not None:
            outcome.attempts.append(refused)
            continue
        cap = await _deployment_cap(spec, deployment, estimate)
        if isinstance(cap, Attempt):
            outcome.attempts.append(cap)
            continue
        try:
            result = await _with_retries(
                functools.partial(attempt, route), model=model, spec=spec, deployment=deployment, outcome=outcome, api_key=api_key
            )
            if result is not None and served is not None:
                served(route, result)
        finally:
            if cap is not None:
                await ratelimit.settle(cap, actual_tokens=outcome.usage.total_tokens or estimate)
        # A call with its own key (an agent's) counts against that key, never the shared deployment.
        subject = health_subject(deployment.id, api_key)
        if result is not None:
            await health.succeeded(subject)
            if spec.name != model.name:
                metrics.observe_fallback(model.name, spec.name)
            return result, route
        await health.failed(subject)
    raise all_failed(model.name, outcome.attempts)


async def _with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    model: ModelSpec,
    spec: ModelSpec,
    deployment: DeploymentSpec,
    outcome: Outcome,
    api_key: str | None = None,
) -> T | None:
    """Calls one deployment up to 1 + max_retries times with backoff (honouring Retry-After).

    Every failure is recorded in `outcome.attempts`; an upstream 400 is raised at once (no
    other deployment would answer it differently); None means this deployment gave up.
    """
    for attempt in range(deployment.provider.max_retries + 1):
        started = time.perf_counter()
        outcome.calls += 1
        try:
            result = await call()
        except ProviderError as exc:
            outcome.upstream_ms += (time.perf_counter() - started) * 1000
            failure = _attempt(spec, deployment, scrub_error(exc, deployment, api_key))
            outcome.attempts.append(failure)
            if exc.kind == "bad_request":
                raise _bad_request(model.name, failure, outcome.attempts) from exc
            delay = backoff_delay(attempt, exc.retry_after) if exc.retryable else None
            if delay is None or attempt == deployment.provider.max_retries:
                return None
            await asyncio.sleep(delay)
            continue
        outcome.upstream_ms += (time.perf_counter() - started) * 1000
        return result
    return None


def record_served(outcome: Outcome, spec: ModelSpec, deployment: DeploymentSpec, used: Usage | None, finish: str) -> None:
    outcome.model_resolved = spec.name
    outcome.provider = deployment.provider.name
    outcome.provider_kind = deployment.provider.kind
    outcome.upstream_model = deployment.upstream_model
    if used is not None:
        outcome.usage = used
    outcome.finish_reason = finish
