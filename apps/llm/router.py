"""The LLM router: logical model -> deployments -> provider calls, with retries, fallbacks,
cooldowns, rate limits and usage. The API endpoints and the in-process gateway both call
`chat`, `stream` and `embed` here, so they behave the same."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings

from apps.llm import ratelimit, usage
from apps.llm.choices import Endpoint, ProviderKind, UsageStatus
from apps.llm.providers import (
    BaseProvider,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    ProviderError,
    StreamEvent,
    ToolCall,
    Usage,
    client_for,
)
from apps.llm.providers.base import ADVISORY_PARAMS, unsupported_params
from apps.llm.providers.stub import count_words
from apps.llm.selectors import DeploymentSpec, ModelSpec, Registry, registry_snapshot
from daarion.infra.errors import (
    BadRequest,
    DaarionError,
    GatewayTimeout,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from daarion.observability import metrics
from daarion.infra.redaction import redact, secret_values
from daarion.infra.redis_client import get_async_redis, key

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- call context and outcome ------------------------------------------------------------


@dataclass
class CallContext:
    agent_id: str | None = None
    microdao_id: str | None = None
    channel_id: str | None = None
    request_id: str = ""
    endpoint: str = Endpoint.PROXY
    # Per-call provider keys, provider name -> API key (an agent's own keys): used instead of
    # the provider's key for this call only; never cached, logged or repr'd.
    credentials: Mapping[str, str] | None = field(default=None, repr=False)

    def api_key_for(self, provider_name: str) -> str | None:
        return (self.credentials or {}).get(provider_name) or None


@dataclass
class Attempt:
    model: str
    provider: str
    upstream_model: str
    error_type: str
    message: str
    status: int | None = None
    retry_after: float | None = None  # the upstream's Retry-After, on a 429
    param: str | None = None  # the request parameter an unsupported_parameter skip is about

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "error_type": self.error_type,
            "status": self.status,
            "message": self.message,
        }


@dataclass
class Outcome:
    """What the caller learns besides the answer: who served it and at what cost in time."""

    logical_model: str
    model_resolved: str = ""
    provider: str = ""
    provider_kind: str = ""
    upstream_model: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    calls: int = 0
    upstream_ms: float = 0.0
    ttft_ms: float | None = None
    started: float = field(default_factory=time.perf_counter)
    rate_headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    # Parameters the serving provider cannot take, left out because its model says so.
    dropped_params: tuple[str, ...] = ()

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started) * 1000 - self.upstream_ms)


# --- tool names --------------------------------------------------------------------------

_VALID_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolNames:
    """Maps tool ids such as `projects.list` to valid function names and back."""

    def __init__(self, tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]] | None = None) -> None:
        self.to_upstream: dict[str, str] = {}
        self.to_caller: dict[str, str] = {}
        # Names in the history's tool calls count too: a follow-up turn may offer no tools.
        history = [call for m in messages or [] for call in (m.get("tool_calls") or [])]
        for tool in [*(tools or []), *history]:
            name = str((tool.get("function") or {}).get("name", ""))
            if not name or name in self.to_upstream:
                continue
            mapped = name if _VALID_TOOL_NAME.match(name) else re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "tool"
            base, n = mapped, 2
            while mapped in self.to_caller and self.to_caller[mapped] != name:
                suffix = f"_{n}"
                mapped, n = base[: 64 - len(suffix)] + suffix, n + 1
            self.to_upstream[name], self.to_caller[mapped] = mapped, name

    @property
    def identity(self) -> bool:
        return all(k == v for k, v in self.to_upstream.items())

    def tools(self, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if not tools or self.identity:
            return tools
        out = []
        for tool in tools:
            function = dict(tool.get("function") or {})
            function["name"] = self.to_upstream.get(function.get("name", ""), function.get("name", ""))
            out.append({**tool, "function": function})
        return out

    def tool_choice(self, choice: Any) -> Any:
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and not self.identity:
            name = choice["function"].get("name", "")
            return {**choice, "function": {**choice["function"], "name": self.to_upstream.get(name, name)}}
        return choice

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.identity:
            return messages
        out = []
        for message in messages:
            if message.get("tool_calls"):
                calls = []
                for call in message["tool_calls"]:
                    function = dict(call.get("function") or {})
                    function["name"] = self.to_upstream.get(function.get("name", ""), function.get("name", ""))
                    calls.append({**call, "function": function})
                message = {**message, "tool_calls": calls}
            out.append(message)
        return out

    def back(self, name: str) -> str:
        return self.to_caller.get(name, name)


# --- deployment health, shared through Redis ----------------------------------------------


def health_subject(deployment_id: int, api_key: str | None = None) -> str:
    """What a call's failures count against: the deployment, or, for a call carrying its own key
    (an agent's `<PROVIDER>_API_KEY`), the deployment with that key. A bad personal key must not
    cool the shared deployment down for every other caller; the key appears only as a digest."""
    if not api_key:
        return str(deployment_id)
    return f"{deployment_id}:{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"


class Health:
    """Cooldown of failing deployments. A subject (health_subject: a deployment, or a deployment
    used with one per-call key) that failed `LLM_COOLDOWN_FAILURES` times within a minute is
    skipped for `LLM_COOLDOWN_SECONDS`, in every process: the cooldown lives in Redis, and each
    process re-reads it at most twice a second."""

    REFRESH = 0.5

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # subject -> epoch seconds
        self._checked: dict[str, float] = {}
        self._failed_recently: set[str] = set()

    @staticmethod
    def _cool_key(subject: str) -> str:
        return key("llm", "cool", subject)

    @staticmethod
    def _fail_key(subject: str) -> str:
        return key("llm", "fail", subject)

    async def cooled(self, subjects: list[str]) -> set[str]:
        now = time.monotonic()
        stale = [i for i in subjects if now - self._checked.get(i, -1e9) > self.REFRESH]
        if stale:
            try:
                values = await get_async_redis().mget([self._cool_key(i) for i in stale])
            except Exception:  # noqa: BLE001 - without Redis, the local view stands
                values = [None] * len(stale)
                logger.warning("cannot read deployment cooldowns", exc_info=True)
            for i, value in zip(stale, values):
                self._checked[i] = now
                self._until[i] = float(value) if value else 0.0
        wall = time.time()
        return {i for i in subjects if self._until.get(i, 0.0) > wall}

    async def failed(self, subject: str) -> None:
        self._failed_recently.add(subject)
        threshold = settings.LLM_COOLDOWN_FAILURES
        seconds = settings.LLM_COOLDOWN_SECONDS
        try:
            client = get_async_redis()
            pipe = client.pipeline(transaction=False)
            pipe.incr(self._fail_key(subject))
            pipe.expire(self._fail_key(subject), 60)
            count, _ = await pipe.execute()
            if int(count) >= threshold:
                until = time.time() + seconds
                await client.set(self._cool_key(subject), str(until), ex=max(1, int(seconds)))
                await client.delete(self._fail_key(subject))
                self._until[subject] = until
                self._checked[subject] = time.monotonic()
                logger.warning("deployment %s cools down for %ss", subject, seconds)
                deployment_id, _, per_key = subject.partition(":")
                metrics.observe_cooldown(int(deployment_id), per_key=bool(per_key))
        except Exception:  # noqa: BLE001
            logger.warning("cannot record a deployment failure", exc_info=True)

    async def succeeded(self, subject: str) -> None:
        if subject not in self._failed_recently:
            return
        self._failed_recently.discard(subject)
        try:
            await get_async_redis().delete(self._fail_key(subject))
        except Exception:  # noqa: BLE001
            logger.warning("cannot reset a deployment failure count", exc_info=True)

    async def state(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """For the models listing: failures in the current minute and cooldown end (of the
        shared deployments; per-key cooldowns are each caller's own)."""
        if not ids:
            return {}
        client = get_async_redis()
        cools: list[Any] = await client.mget([self._cool_key(str(i)) for i in ids])
        fails = await client.mget([self._fail_key(str(i)) for i in ids])
        wall = time.time()
        return {
            i: {
                "cooling_down": bool(c) and float(c) > wall,
                "cooldown_remaining_s": round(max(0.0, float(c) - wall), 1) if c else 0.0,
                "recent_failures": int(f or 0),
            }
            for i, c, f in zip(ids, cools, fails)
        }


health = Health()


# --- candidate order ---------------------------------------------------------------------


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


async def candidates(registry: Registry, model: ModelSpec, ctx: CallContext | None = None,
                     ) -> tuple[list[tuple[ModelSpec, DeploymentSpec]], list[Attempt]]:
    chain = model_chain(registry, model)
    subjects = {d.id: health_subject(d.id, ctx.api_key_for(d.provider.name) if ctx else None)
                for spec in chain for d in spec.deployments}
    cooled = await health.cooled(list(subjects.values()))
    skipped: list[Attempt] = []
    out: list[tuple[ModelSpec, DeploymentSpec]] = []
    for spec in chain:
        for deployment in weighted_order(spec.deployments):
            if subjects[deployment.id] in cooled:
                skipped.append(Attempt(spec.name, deployment.provider.name, deployment.upstream_model, "cooling_down",
                                       "skipped: the deployment is cooling down after repeated failures"))
            else:
                out.append((spec, deployment))
    return out, skipped


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
        return Attempt(spec.name, provider.name, deployment.upstream_model, "no_api_key",
                       f"skipped: provider {provider.name!r} has no API key (set {where})")
    return None


def all_failed(model: str, attempts: list[Attempt]) -> DaarionError:
    details = {"model": model, "attempts": [a.as_dict() for a in attempts]}
    tried = [a for a in attempts if a.error_type not in _SKIPPED]
    refused = [a for a in attempts if a.error_type == "unsupported_parameter"]
    if not tried and refused:
        # Every deployment that could have served it cannot take a parameter the caller sent.
        return BadRequest(refused[0].message, type="unsupported_parameter",
                          details={**details, "param": refused[0].param})
    capped = [a for a in attempts if a.error_type == "deployment_rate_limited"]
    if not tried and capped and len(capped) == len(attempts):
        # Every deployment is at its own rpm/tpm cap: a rate limit the caller waits out.
        waits = [a.retry_after for a in capped if a.retry_after is not None]
        return RateLimited(f"every deployment of {model!r} is at its own rpm/tpm cap", type="deployment_rate_limited",
                           details=details, headers={"Retry-After": str(max(1, math.ceil(min(waits) if waits else 1)))})
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
        return RateLimited(f"every deployment of {model!r} is rate limited upstream; last: {last.message}",
                           type="upstream_rate_limited", details=details, headers=headers)
    return UpstreamError(f"every deployment of {model!r} failed; last: {last.message}", details=details)


def call_secrets(deployment: DeploymentSpec, api_key: str | None) -> tuple[str, ...]:
    """Every credential a call to `deployment` carried: the call's own key, the provider's, and
    its extra headers' values (some providers take keys there)."""
    provider = deployment.provider
    return secret_values([api_key, provider.api_key, *(value for _, value in provider.extra_headers)])


def _scrubbed(exc: ProviderError, deployment: DeploymentSpec, api_key: str | None) -> ProviderError:
    """`exc` with the call's credentials removed from its message, in place: the message goes to
    the caller (error, attempts, a stream's errorText), the logs and run rows (daarion/infra/redaction.py)."""
    exc.message = redact(exc.message, call_secrets(deployment, api_key))
    return exc


def _scrub_answer(response: ChatResponse, secrets: tuple[str, ...]) -> None:
    """An answer with the call's credentials removed, in place: an upstream that repeats the
    request's headers in a successful answer must not hand the key to the caller either."""
    for answer in (response, *response.alternatives):
        if answer.content:
            answer.content = redact(answer.content, secrets)
        if answer.reasoning:
            answer.reasoning = redact(answer.reasoning, secrets)
        answer.tool_calls = [ToolCall(c.id, c.name, redact(c.arguments, secrets)) for c in answer.tool_calls]


def _attempt(spec: ModelSpec, deployment: DeploymentSpec, exc: ProviderError) -> Attempt:
    return Attempt(spec.name, deployment.provider.name, deployment.upstream_model, exc.kind, exc.message, exc.status,
                   exc.retry_after)


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
        return Attempt(spec.name, deployment.provider.name, deployment.upstream_model, "deployment_rate_limited",
                       "skipped: the deployment's own rpm/tpm cap is reached",
                       retry_after=float(wait) if wait else None)


@dataclass
class Route:
    """One deployment the routing loop is trying: its model, the client and the call's key."""

    spec: ModelSpec
    deployment: DeploymentSpec
    client: BaseProvider
    api_key: str | None


async def _route(
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
            result = await _with_retries(functools.partial(attempt, route), model=model, spec=spec,
                                         deployment=deployment, outcome=outcome, api_key=api_key)
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


# --- the calls ---------------------------------------------------------------------------


@dataclass
class ChatCall:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    # Further OpenAI parameters as the caller sent them (ChatRequest.params).
    params: dict[str, Any] | None = None

    @property
    def cap(self) -> int | None:
        """The completion cap under either of OpenAI's names (for estimates)."""
        return (self.params or {}).get("max_completion_tokens") or self.max_tokens


def fit_params(call: ChatCall, client: BaseProvider, spec: ModelSpec,
               deployment: DeploymentSpec) -> tuple[dict[str, Any] | None, tuple[str, ...], Attempt | None]:
    """(the parameters this deployment gets, those dropped, or the skip when it cannot take
    one and its model refuses rather than drops)."""
    if not call.params:
        return None, (), None
    unsupported = unsupported_params(call.params, client.accepts)
    if not unsupported:
        return call.params, (), None
    refusable = [name for name in unsupported if name not in ADVISORY_PARAMS]
    if spec.drop_params or not refusable:
        return {k: v for k, v in call.params.items() if k not in unsupported}, tuple(unsupported), None
    name = refusable[0]
    return None, (), Attempt(
        spec.name, deployment.provider.name, deployment.upstream_model, "unsupported_parameter",
        f"parameter {name!r} is not supported by model {spec.name!r} (provider kind {deployment.provider.kind!r}); "
        "leave it out, or let the model drop it (drop_unsupported_params)", param=name,
    )


def _usage_record(ctx: CallContext, outcome: Outcome, model: ModelSpec | None, *, status: str, error_type: str = "",
                  stream: bool = False, endpoint: str | None = None) -> dict[str, Any]:
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


async def _admit(registry: Registry, ctx: CallContext, estimate: int, outcome: Outcome, model: ModelSpec,
                 completion: int) -> ratelimit.Lease | None:
    buckets = ratelimit.buckets_for(registry, agent_id=ctx.agent_id, microdao_id=ctx.microdao_id)
    # Only a budget needs the cost: the common call skips walking the fallback chain.
    cost = _cost_estimate(registry, model, estimate, completion) if any(b.budget_micro_usd for b in buckets) else 0
    lease = await ratelimit.acquire(buckets, estimate=estimate, cost_estimate=cost)
    if lease is not None:
        outcome.rate_headers = dict(lease.headers)
    return lease


def _completion_estimate(call: ChatCall) -> int:
    """The answer's share of estimate_tokens' estimate (its cap, or what it assumes without one)."""
    return call.cap or ratelimit.COMPLETION_ESTIMATE


@contextlib.asynccontextmanager
async def _refusals_recorded(ctx: CallContext, outcome: Outcome, *, stream: bool = False,
                             endpoint: str | None = None) -> AsyncIterator[None]:
    """A call refused before routing (unknown or disabled model, a rate limit) still leaves a
    usage record, status `refused` with the error's type, so per-agent accounting shows it."""
    try:
        yield
    except DaarionError as exc:
        usage.emit(_usage_record(ctx, outcome, None, status=UsageStatus.REFUSED, error_type=exc.type,
                                 stream=stream, endpoint=endpoint))
        raise


async def chat(call: ChatCall, ctx: CallContext, outcome: Outcome | None = None) -> tuple[ChatResponse, Outcome]:
    """One non-streamed chat completion, routed. Raises DaarionError subclasses."""
    outcome = outcome or Outcome(logical_model=call.model)
    estimate = ratelimit.estimate_tokens(call.messages, call.cap)
    async with _refusals_recorded(ctx, outcome):
        registry = await fresh_registry(call.model)
        model = resolve_model(registry, call.model)
        lease = await _admit(registry, ctx, estimate, outcome, model, _completion_estimate(call))
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
        record = _usage_record(ctx, outcome, served_model, status=status, error_type=error_type)
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
        _served(outcome, route.spec, route.deployment, response.usage, response.finish_reason)
        _scrub_answer(response, call_secrets(route.deployment, route.api_key))

    response, route = await _route(registry, model, ctx, outcome, estimate, attempt, refusal=refusal, served=served)
    response.tool_calls = [ToolCall(c.id, names.back(c.name), c.arguments) for c in response.tool_calls]
    for other in response.alternatives:
        other.tool_calls = [ToolCall(c.id, names.back(c.name), c.arguments) for c in other.tool_calls]
    outcome.dropped_params = dropped
    return response, route.spec


def chat_request(call: ChatCall, names: ToolNames) -> ChatRequest:
    """The provider request of a call (model, key and parameters are set per deployment)."""
    return ChatRequest(
        messages=names.messages(call.messages),
        temperature=call.temperature,
        max_tokens=call.max_tokens,
        tools=names.tools(call.tools),
        tool_choice=names.tool_choice(call.tool_choice),
        response_format=call.response_format,
    )


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
            failure = _attempt(spec, deployment, _scrubbed(exc, deployment, api_key))
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


def _served(outcome: Outcome, spec: ModelSpec, deployment: DeploymentSpec, used: Usage | None, finish: str) -> None:
    outcome.model_resolved = spec.name
    outcome.provider = deployment.provider.name
    outcome.provider_kind = deployment.provider.kind
    outcome.upstream_model = deployment.upstream_model
    if used is not None:
        outcome.usage = used
    outcome.finish_reason = finish


class Stream:
    """A routed streamed chat. `open()` picks a deployment and waits for its first event
    (retrying and falling back until one answers); `events()` yields the answer. Usage is
    recorded when the stream ends, fails or is cancelled, with the partial count then."""

    def __init__(self, call: ChatCall, ctx: CallContext) -> None:
        self.call = call
        self.ctx = ctx
        self.outcome = Outcome(logical_model=call.model)
        self._registry: Registry | None = None
        self._model: ModelSpec | None = None
        self._served: ModelSpec | None = None
        self._lease: ratelimit.Lease | None = None
        self._iterator: AsyncIterator[StreamEvent] | None = None
        self._first: StreamEvent | None = None
        self._deployment: DeploymentSpec | None = None  # the one serving, for scrubbing its errors
        self._api_key: str | None = None
        self._secrets: tuple[str, ...] = ()
        self._names = ToolNames(call.tools, call.messages)
        self._prompt_estimate = 0
        self._estimate = 0
        self._completion_text: list[str] = []
        self._finished = False
        self._recorded = False
        self._admitted = False  # refused calls (unknown model, rate limit) record no usage

    @property
    def prompt_estimate(self) -> int:
        """The prompt's size as estimated before the upstream's count arrives (after admit)."""
        return self._prompt_estimate

    async def admit(self) -> None:
        """Model lookup and rate limits: errors here are plain HTTP errors, before any byte."""
        estimate = self._estimate = ratelimit.estimate_tokens(self.call.messages, self.call.cap)
        self._prompt_estimate = max(1, estimate - _completion_estimate(self.call))
        async with _refusals_recorded(self.ctx, self.outcome, stream=True):
            self._registry = await fresh_registry(self.call.model)
            self._model = resolve_model(self._registry, self.call.model)
            self._lease = await _admit(self._registry, self.ctx, estimate, self.outcome, self._model,
                                       _completion_estimate(self.call))
        self._admitted = True

    async def open(self) -> None:
        assert self._registry is not None and self._model is not None, "admit() first"
        request = chat_request(self.call, self._names)
        dropped: tuple[str, ...] = ()

        def refusal(route: Route) -> Attempt | None:
            nonlocal dropped
            request.params, dropped, refused = fit_params(self.call, route.client, route.spec, route.deployment)
            return refused

        async def attempt(route: Route) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
            # A stream counts as answered once its first event arrives: until then a failure
            # is retried or falls back like any call's.
            request.model, request.api_key = route.deployment.upstream_model, route.api_key
            iterator = route.client.stream(request).__aiter__()
            try:
                return iterator, await iterator.__anext__()
            except StopAsyncIteration:
                return iterator, StreamEvent("finish", finish_reason="stop")

        try:
            (self._iterator, self._first), route = await _route(
                self._registry, self._model, self.ctx, self.outcome, self._estimate, attempt, refusal=refusal)
        except DaarionError as exc:
            await self.finish(UsageStatus.ERROR, exc.type)
            raise
        except asyncio.CancelledError:
            await self.finish(UsageStatus.CANCELLED, "client_disconnected")
            raise
        self.outcome.ttft_ms = (time.perf_counter() - self.outcome.started) * 1000
        self._deployment, self._api_key = route.deployment, route.api_key
        self._secrets = call_secrets(route.deployment, route.api_key)
        _served(self.outcome, route.spec, route.deployment, None, "stop")
        self.outcome.dropped_params = dropped
        self._served = route.spec

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The answer's events, tool names mapped back. Mid-stream upstream failures raise
        UpstreamError (no fallback once the caller has seen part of an answer)."""
        assert self._iterator is not None and self._first is not None, "open() first"
        status, error_type = UsageStatus.CANCELLED, "client_disconnected"
        try:
            event: StreamEvent | None = self._first
            while event is not None:
                if self._secrets and event.kind in ("text", "reasoning", "tool_call"):
                    # Per piece: a key the upstream repeats in its answer never reaches the caller
                    # (one split across two pieces could; keys are single tokens in practice).
                    event.text = redact(event.text, self._secrets)
                    event.arguments = redact(event.arguments, self._secrets)
                if event.kind in ("text", "reasoning"):
                    self._completion_text.append(event.text)
                elif event.kind == "tool_call" and event.name:
                    event.name = self._names.back(event.name)
                    self._completion_text.append(event.arguments)
                elif event.kind == "tool_call":
                    self._completion_text.append(event.arguments)
                elif event.kind == "finish":
                    self.outcome.usage = event.usage or self._estimated_usage()
                    event.usage = self.outcome.usage
                    self.outcome.finish_reason = event.finish_reason or "stop"
                    self._finished = True
                yield event
                if self._finished:
                    break
                try:
                    event = await self._iterator.__anext__()
                except StopAsyncIteration:
                    event = None if self._finished else StreamEvent("finish", finish_reason="stop")
            status, error_type = UsageStatus.OK, ""
        except ProviderError as exc:
            status, error_type = UsageStatus.ERROR, f"upstream_{exc.kind}"
            if self._deployment is not None:
                _scrubbed(exc, self._deployment, self._api_key)
            raise UpstreamError(f"upstream stream failed: {exc.message}", details={"error_type": exc.kind}) from exc
        finally:
            closer = getattr(self._iterator, "aclose", None)
            if closer is not None and not self._finished:
                try:
                    await closer()  # closes the upstream connection, so the upstream stops
                except Exception:  # noqa: BLE001
                    pass
            await self.finish(status, error_type)

    def finish_with(self, task: asyncio.Task | None) -> None:
        """Makes sure usage is recorded and the rate-limit lease released when `task` ends,
        even if the response body never started (a client gone right after the headers)."""
        if task is None:
            return

        def done(_: asyncio.Task) -> None:
            if self._admitted and not self._recorded:
                task.get_loop().create_task(self.abandon())

        task.add_done_callback(done)

    async def abandon(self) -> None:
        if self._iterator is not None and not self._finished:
            closer = getattr(self._iterator, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - the upstream is going away either way
                    pass
        await self.finish(UsageStatus.CANCELLED, "client_disconnected")

    def _estimated_usage(self) -> Usage:
        return Usage(self._prompt_estimate, count_words("".join(self._completion_text)))

    async def finish(self, status: str, error_type: str = "") -> None:
        if self._recorded:
            return
        self._recorded = True
        if not self._finished and status != UsageStatus.OK:
            # Partial usage: what the caller received before the stream stopped.
            self.outcome.usage = self._estimated_usage() if self._completion_text else Usage()
        record = _usage_record(self.ctx, self.outcome, self._served or self._model, status=status,
                               error_type=error_type, stream=True)
        usage.emit(record)
        await asyncio.shield(ratelimit.settle(self._lease, actual_tokens=self.outcome.usage.total_tokens,
                                              cost_usd=record["cost"]))


def _embed_refusal(spec: ModelSpec, deployment: DeploymentSpec, client: BaseProvider, *, dimensions: int | None,
                   tokens: bool) -> Attempt | None:
    """The skip of a deployment that cannot take `dimensions` or token-id input (never dropped:
    either would change what the caller gets back)."""
    if dimensions is not None and not client.embeds_dimensions:
        param, what = "dimensions", "a `dimensions` choice"
    elif tokens and not client.embeds_tokens:
        param, what = "input", "token-id input (send the text instead)"
    else:
        return None
    return Attempt(spec.name, deployment.provider.name, deployment.upstream_model, "unsupported_parameter",
                   f"model {spec.name!r} (provider kind {deployment.provider.kind!r}) does not take {what}",
                   param=param)


async def embed(
    *, model_name: str, inputs: list[Any], ctx: CallContext, outcome: Outcome | None = None,
    dimensions: int | None = None, params: dict[str, Any] | None = None,
) -> tuple[EmbeddingResponse, Outcome]:
    """`inputs`: strings, or lists of token ids; `params`: further OpenAI embeddings
    parameters (user, unknown keys) for upstreams that take them as sent."""
    outcome = outcome or Outcome(logical_model=model_name)
    tokens = any(not isinstance(item, str) for item in inputs)
    estimate = max(1, sum(len(item) // 4 if isinstance(item, str) else len(item) for item in inputs))
    async with _refusals_recorded(ctx, outcome, endpoint=Endpoint.EMBEDDINGS):
        registry = await fresh_registry(model_name)
        model = resolve_model(registry, model_name, for_embeddings=True)
        lease = await _admit(registry, ctx, estimate, outcome, model, 0)
    status, error_type = UsageStatus.ERROR, "internal_error"
    served: ModelSpec | None = model
    try:
        forwarded: dict[str, Any] | None = None

        def refusal(route: Route) -> Attempt | None:
            nonlocal forwarded
            forwarded = params if route.client.accepts is None else None
            return _embed_refusal(route.spec, route.deployment, route.client, dimensions=dimensions, tokens=tokens)

        async def attempt(route: Route) -> EmbeddingResponse:
            return await route.client.embed(model=route.deployment.upstream_model, inputs=inputs, api_key=route.api_key,
                                            dimensions=dimensions, params=forwarded)

        result, route = await _route(
            registry, model, ctx, outcome, estimate, attempt, eligible=lambda spec: spec.can_embed, refusal=refusal,
            served=lambda route, result: _served(outcome, route.spec, route.deployment, result.usage, "stop"))
        served = route.spec
        status, error_type = UsageStatus.OK, ""
        return result, outcome
    except DaarionError as exc:
        error_type = exc.type
        raise
    except asyncio.CancelledError:
        status, error_type = UsageStatus.CANCELLED, "client_disconnected"
        raise
    finally:
        record = _usage_record(ctx, outcome, served, status=status, error_type=error_type, endpoint=Endpoint.EMBEDDINGS)
        usage.emit(record)
        # Shielded: a second cancellation must not leave the slot taken.
        await asyncio.shield(ratelimit.settle(lease, actual_tokens=outcome.usage.total_tokens, cost_usd=record["cost"]))
