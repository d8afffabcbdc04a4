"""OpenTelemetry tracing: off unless OTEL_EXPORTER_OTLP_ENDPOINT (or its traces variant) is set.

When on, each process exports its spans over OTLP/HTTP (the standard OTEL_* variables apply:
OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*), and:

- the official instrumentations trace what a request crosses: the ASGI server (every door, the
  fast lane included; daarion/observability/http.py names the span by route template and puts
  the answer's `x-request-id` on it), Celery (a task continues the trace of the request that
  enqueued it), psycopg, Redis, and the aiohttp and httpx clients, which send `traceparent`
  with each upstream LLM call, HTTP tool call and upstream MCP request;
- a turn's steps get spans of ours: `invoke_agent`, `agent.recall`, one `chat <model>` per
  model call (GenAI semantic-convention attributes: model, tokens, finish reasons),
  `execute_tool <tool>` per tool call, `agent.remember`.

HTTP attributes follow the stable semantic conventions (OTEL_SEMCONV_STABILITY_OPT_IN=http
unless set otherwise). With tracing off nothing is instrumented and every helper here is a
no-op costing one attribute read.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)

T = TypeVar("T")

_state: dict[str, Any] = {"on": False, "provider": None}
tracer = trace.get_tracer("daarion")


def enabled() -> bool:
    return _state["on"]


def configure(*, service_name: str | None = None) -> bool:
    """Installs the OTLP exporter when the environment asks for it (settings.TRACING_ENABLED);
    once per process. Returns whether tracing is on."""
    from django.conf import settings

    if _state["on"] or not settings.TRACING_ENABLED:
        return _state["on"]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    # Smaller, more frequent export batches than the SDK's 512 spans every 5 s: encoding a batch
    # holds the GIL, and a 512-span batch stalled the web process's requests by 20-30 ms
    # (bench/results/tracing_cost.json). Either can be set as usual.
    os.environ.setdefault("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name or "daarion"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    _instrument_libraries(provider)
    return True


def _instrument_libraries(provider: Any) -> None:
    """The official instrumentations of the clients and the task queue (the ASGI server's is
    applied where the app is built: observability.http.instrument)."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    # No SQL commenter: statements stay as written, so Postgres can reuse their plans.
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    RedisInstrumentor().instrument(tracer_provider=provider)


def install(provider: Any) -> None:
    """Uses `provider` (an SDK TracerProvider) for our spans from now on: configure() calls
    it, and tests that export to memory."""
    global tracer
    _state["provider"] = provider
    _state["on"] = True
    tracer = provider.get_tracer("daarion")


def provider() -> Any:
    """The SDK TracerProvider in use, None while tracing is off."""
    return _state["provider"]


def flush(timeout_ms: int = 5000) -> None:
    if _state["provider"] is not None:
        _state["provider"].force_flush(timeout_ms)


# --- spans -------------------------------------------------------------------------------


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Any]:
    """A span of ours, current inside the block; an exception marks it failed. Yields None
    when tracing is off (callers check before setting attributes: `if s: s.set_attribute`)."""
    if not _state["on"]:
        yield None
        return
    with tracer.start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as current:
        yield current


def set_attributes(current: Any, attributes: Mapping[str, Any]) -> None:
    if current is not None:
        current.set_attributes(_clean(attributes))


def mark_failed(current: Any, description: str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description[:300]))


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float and lists of them, never None."""
    return {k: v for k, v in (attributes or {}).items() if v is not None and v != ""}


def llm_call_span(record: Mapping[str, Any]) -> None:
    """A `chat <model>` (or `embeddings <model>`) span for an LLM call made outside an agent
    turn (the proxy's doors), from its usage record: started `latency_ms` ago, ended now, with
    the GenAI attributes. Inside a turn the step's own span already covers the call."""
    if not _state["on"]:
        return
    try:
        _llm_call_span(record)
    except Exception:  # noqa: BLE001 - a usage record's emit never raises; nor does its span
        logger.warning("could not record an LLM call's span", exc_info=True)


def _llm_call_span(record: Mapping[str, Any]) -> None:
    current = trace.get_current_span()
    if getattr(current, "name", "").startswith("chat "):
        return
    import time

    endpoint = str(record.get("endpoint") or "")
    operation = "embeddings" if endpoint == "embeddings" else "chat"
    model = record.get("logical_model") or ""
    latency_ns = int(float(record.get("latency_ms") or 0) * 1_000_000)
    end = time.time_ns()
    attributes = _clean(
        {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            "gen_ai.response.model": record.get("upstream_model"),
            "gen_ai.provider.name": record.get("provider"),
            "gen_ai.usage.input_tokens": record.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": record.get("completion_tokens"),
            "gen_ai.agent.id": record.get("agent_id"),
            "daarion.llm.endpoint": endpoint,
            "daarion.llm.status": record.get("status"),
            "error.type": record.get("error_type"),
            "http.request_id": record.get("request_id"),
        }
    )
    span = tracer.start_span(f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes, start_time=end - latency_ns)
    if record.get("status") not in ("ok", None):
        span.set_status(Status(StatusCode.ERROR, str(record.get("error_type") or record.get("status"))))
    span.end(end_time=end)


# --- context across threads ---------------------------------------------------------------


async def _attached(coro: Coroutine[Any, Any, T], ctx: otel_context.Context) -> T:
    token = otel_context.attach(ctx)
    try:
        return await coro
    finally:
        otel_context.detach(token)


def carry(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """`coro`, run with the caller's trace context wherever it is scheduled (a worker thread
    hands its run to the process's event loop, whose tasks do not inherit the thread's)."""
    if not _state["on"]:
        return coro
    return _attached(coro, otel_context.get_current())
