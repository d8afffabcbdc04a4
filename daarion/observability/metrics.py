"""Prometheus metrics (prometheus-client): the metric objects, the `observe_*` functions the
code calls, and GET /metrics.

Every process counts its own: web processes and Celery workers alike. With
PROMETHEUS_MULTIPROC_DIR set (devstack, docker-compose and the tests set it), each process
writes its values to memory-mapped files in that folder and /metrics adds up all of them, so
one scrape of any web replica on a host shows the workers' counts too. Gauges that describe
shared state (queue lengths, the embedding backlog) are not kept per process: they are read
at scrape time (ScrapeTimeCollector).

The hot path pays a few dictionary lookups and memory writes per call: label children are
cached, and with DAARION_METRICS=0 every `observe_*` returns at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

ENABLED: bool = settings.METRICS_ENABLED
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus-client opens its files there as metrics are created: a folder that is not
    # there yet (a fresh tmpfs) must not fail the first call that counts.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# Latency buckets from a cache hit (ms) to a long model answer (minutes).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "daarion_http_requests", "HTTP requests answered, by route template, method and status.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "daarion_http_request_duration_seconds",
    "Time from the request to the end of its answer (a stream: until it closed).",
    ["route", "method", "status"],
    buckets=_FAST,
)

LLM_REQUESTS = Counter(
    "daarion_llm_requests",
    "LLM calls by logical model, provider, endpoint and status (ok, error, refused, cancelled).",
    ["model", "provider", "endpoint", "status"],
)
LLM_ERRORS = Counter("daarion_llm_errors", "Failed or refused LLM calls by error type.", ["model", "error_type"])
LLM_DURATION = Histogram(
    "daarion_llm_request_duration_seconds",
    "LLM call latency, retries and fallbacks included.",
    ["model", "provider"],
    buckets=_SLOW,
)
LLM_TTFT = Histogram(
    "daarion_llm_time_to_first_token_seconds",
    "Streamed LLM calls: time to the first event.",
    ["model", "provider"],
    buckets=_SLOW,
)
LLM_TOKENS = Counter("daarion_llm_tokens", "Tokens by logical model and direction (prompt, completion).", ["model", "direction"])
LLM_COST = Counter("daarion_llm_cost_usd", "Cost of LLM calls in US dollars, by logical model.", ["model"])
LLM_RETRIES = Counter(
    "daarion_llm_retries", "Upstream calls beyond the first one of an LLM call (retries and fallbacks).", ["model"]
)
RATELIMIT_REFUSALS = Counter(
    "daarion_ratelimit_refusals", "Calls refused before routing by a rate limit or budget, by kind (the error type).", ["kind"]
)
POLICY_REFUSALS = Counter(
    "daarion_ratelimit_policy_refusals",
    "Refusals by the policy that refused (its scope: "
    "default, agent, microdao, deployment) and the limit reached (requests, tokens, concurrency, budget).",
    ["scope", "limit"],
)
LLM_FALLBACKS = Counter(
    "daarion_llm_fallbacks",
    "LLM calls answered by a fallback model, by the model asked for and the one that answered.",
    ["model", "served"],
)
LLM_COOLDOWNS = Counter(
    "daarion_llm_cooldowns",
    "Cooldowns entered after repeated failures: of a shared deployment (by its id) or of one caller's own key on it (`per_key`).",
    ["deployment", "scope"],
)

TOOL_CALLS = Counter("daarion_tool_calls", "Tool calls by tool and status (ok, denied, invalid_args, ...).", ["tool", "status"])
TOOL_DURATION = Histogram("daarion_tool_call_duration_seconds", "Tool call latency, checks included.", ["tool"], buckets=_FAST)

MEMORY_QUERIES = Counter("daarion_memory_queries", "Memory queries by outcome (ok, error).", ["status"])
MEMORY_QUERY_DURATION = Histogram("daarion_memory_query_duration_seconds", "Memory query latency.", buckets=_FAST)
MEMORY_STORES = Counter("daarion_memory_stores", "Memories stored (new entries).", ["kind"])
MEMORY_EMBEDDED = Counter("daarion_memory_embeddings", "Memory entries embedded by the embedding jobs, by outcome.", ["status"])

CELERY_TASKS = Counter(
    "daarion_celery_tasks", "Celery task runs by task and end state (success, failure, retry).", ["task", "state"]
)
CELERY_DURATION = Histogram("daarion_celery_task_duration_seconds", "Celery task runtime by task.", ["task"], buckets=_SLOW)

AGENT_TURNS = Counter("daarion_agent_turns", "Agent runs (turns) by agent and end status.", ["agent", "status"])
AGENT_STEPS = Histogram(
    "daarion_agent_turn_steps", "Model steps per agent turn.", ["agent"], buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
)

# Refusals of `_admit` (apps/llm/ratelimit.py) that are a limit or a budget, not a bad request.
_LIMIT_TYPES_PREFIXES = ("rate_limit", "budget", "quota")

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached: labels() takes a lock and builds a tuple each call."""
    cache_key = (id(metric), *labels)
    child = _children.get(cache_key)
    if child is None:
        child = _children[cache_key] = metric.labels(*labels)
    return child


def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    status_text = str(status)
    _child(HTTP_REQUESTS, route, method, status_text).inc()
    _child(HTTP_DURATION, route, method, status_text).observe(seconds)


def observe_llm(record: dict[str, Any]) -> None:
    """One LLM call, from its usage record (apps/llm/usage.emit: every call, served or refused,
    leaves exactly one)."""
    if not ENABLED:
        return
    try:
        model = record.get("logical_model") or ""
        provider = record.get("provider") or ""
        status = record.get("status") or ""
        _child(LLM_REQUESTS, model, provider, record.get("endpoint") or "", status).inc()
        error_type = record.get("error_type") or ""
        if error_type:
            _child(LLM_ERRORS, model, error_type).inc()
            if status == "refused" and error_type.startswith(_LIMIT_TYPES_PREFIXES):
                _child(RATELIMIT_REFUSALS, error_type).inc()
        if status == "refused":
            return
        latency = record.get("latency_ms")
        if latency is not None:
            _child(LLM_DURATION, model, provider).observe(float(latency) / 1000)
        ttft = record.get("ttft_ms")
        if ttft is not None:
            _child(LLM_TTFT, model, provider).observe(float(ttft) / 1000)
        prompt, completion = record.get("prompt_tokens") or 0, record.get("completion_tokens") or 0
        if prompt:
            _child(LLM_TOKENS, model, "prompt").inc(prompt)
        if completion:
            _child(LLM_TOKENS, model, "completion").inc(completion)
        cost = float(record.get("cost") or 0)
        if cost:
            _child(LLM_COST, model).inc(cost)
        attempts = int(record.get("attempts") or 0)
        if attempts > 1:
            _child(LLM_RETRIES, model).inc(attempts - 1)
    except Exception:  # noqa: BLE001 - counting must never fail a call
        logger.warning("could not count an LLM call", exc_info=True)


def observe_limit_refusal(bucket: str, limit: str) -> None:
    """A rate-limit bucket refused a call; `bucket` is its name (`agent:agent:sofia`, ...), of
    which only the scope is a label (subjects are callers' ids)."""
    if ENABLED:
        _child(POLICY_REFUSALS, bucket.split(":", 1)[0], limit).inc()


def observe_fallback(model: str, served: str) -> None:
    if ENABLED:
        _child(LLM_FALLBACKS, model, served).inc()


def observe_cooldown(deployment_id: int, *, per_key: bool) -> None:
    if ENABLED:
        _child(LLM_COOLDOWNS, str(deployment_id), "per_key" if per_key else "shared").inc()


def observe_tool_call(tool: str, status: str, seconds: float) -> None:
    if not ENABLED:
        return
    _child(TOOL_CALLS, tool, status).inc()
    _child(TOOL_DURATION, tool).observe(seconds)


def observe_memory_query(status: str, seconds: float) -> None:
    if not ENABLED:
        return
    _child(MEMORY_QUERIES, status).inc()
    MEMORY_QUERY_DURATION.observe(seconds)


def observe_memory_store(kind: str, count: int = 1) -> None:
    if ENABLED and count:
        _child(MEMORY_STORES, kind).inc(count)


def observe_embedded(status: str, count: int) -> None:
    if ENABLED and count:
        _child(MEMORY_EMBEDDED, status).inc(count)


def observe_celery_task(task: str, state: str, seconds: float | None) -> None:
    if not ENABLED:
        return
    _child(CELERY_TASKS, task, state).inc()
    if seconds is not None:
        _child(CELERY_DURATION, task).observe(seconds)


def observe_agent_turn(agent: str, status: str, steps: int) -> None:
    if not ENABLED:
        return
    _child(AGENT_TURNS, agent, status).inc()
    if steps:
        _child(AGENT_STEPS, agent).observe(steps)


# --- scrape-time gauges ------------------------------------------------------------------


class ScrapeTimeCollector(Collector):
    """Gauges of shared state, read when Prometheus scrapes: Celery queue lengths (Redis) and
    what the apps register (memory: the embedding backlog, its age, jobs by status). A failing
    read leaves its gauges out and counts in daarion_scrape_errors; the scrape still answers."""

    def collect(self) -> Iterable[Metric]:
        self._failed: list[str] = []
        try:
            yield from list(self._queues())
        except Exception:  # noqa: BLE001 - one broken source must not hide the rest
            logger.warning("cannot read the Celery queue lengths", exc_info=True)
            self._failed.append("redis")
        yield from self._readers()
        errors = GaugeMetricFamily("daarion_scrape_errors", "Scrape-time readings that failed, by source.", labels=["source"])
        for source in self._failed:
            errors.add_metric([source], 1)
        yield errors

    def _queues(self) -> Iterable[Metric]:
        from daarion.celery import Queue
        from daarion.infra.redis_client import get_redis

        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        names = sorted({*(q.value for q in Queue), settings.AGENTS_RUN_QUEUE})
        pipe = get_redis().pipeline(transaction=False)
        for name in names:
            pipe.llen(prefix + name)
        gauge = GaugeMetricFamily("daarion_celery_queue_length", "Messages waiting in each Celery queue.", labels=["queue"])
        for name, length in zip(names, pipe.execute(), strict=True):
            gauge.add_metric([name], int(length or 0))
        yield gauge

    def _readers(self) -> Iterable[Metric]:
        for name, read in list(_scrape_readers.items()):
            try:
                yield from list(read())
            except Exception:  # noqa: BLE001 - one broken source must not hide the rest
                logger.warning("scrape-time reading %s failed", name, exc_info=True)
                self._failed.append(name)


# name -> a function yielding metric families, read at scrape time. Apps register theirs in
# AppConfig.ready() (daarion must not import the apps: the dependency rule).
_scrape_readers: dict[str, Callable[[], Iterable[Metric]]] = {}


def register_scrape_reader(name: str, read: Callable[[], Iterable[Metric]]) -> None:
    """`read` is called on every scrape; a failure leaves its metrics out and is counted in
    daarion_scrape_errors{source=name}."""
    _scrape_readers[name] = read


def exposition() -> bytes:
    """The text exposition of every process's metrics plus the scrape-time gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:  # one process: its own metrics (and the client's process and platform collectors)
        counted = DEFAULT_REGISTRY
    scraped = CollectorRegistry()
    scraped.register(ScrapeTimeCollector())
    return generate_latest(counted) + generate_latest(scraped)


@csrf_exempt  # token-authenticated, no cookies: CSRF would only turn a wrong method into a 403
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: needs a service token with the `metrics` scope (Prometheus sends it with
    its `authorization` scrape setting); refusals in the house error envelope."""
    from apps.access.auth import authenticate_request
    from apps.access.choices import Scope
    from daarion.infra.errors import DaarionError, error_response, render_error

    if request.method != "GET":
        response: HttpResponse = error_response(405, "method_not_allowed", f"method {request.method} is not allowed on /metrics")
        response["Allow"] = "GET"
        return response
    try:
        authenticate_request(request, Scope.METRICS)
    except DaarionError as exc:
        return render_error(exc)
    started = time.perf_counter()
    body = exposition()
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    response["X-Scrape-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
    return response
