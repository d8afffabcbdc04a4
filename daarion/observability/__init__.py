"""Observability: liveness/readiness probes, Prometheus metrics and OpenTelemetry traces.

Each concern is one module (health, metrics, http, tracing, celery_signals); the rest of the
code calls small functions here (`metrics.observe_...`, `tracing.span(...)`) that cost next to
nothing when metrics or tracing are switched off.
"""
