"""The admin's small "Metrics" page: where the dashboards and probes are, and this host's
totals read from the same counters /metrics serves (staff only, through admin_view)."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from prometheus_client.parser import text_string_to_metric_families

from daarion.observability.metrics import exposition

# (metric, label to group by, title) shown as totals since the metrics folder was emptied.
_TOTALS = [
    ("daarion_http_requests_total", "status", "HTTP requests by status"),
    ("daarion_llm_requests_total", "status", "LLM calls by status"),
    ("daarion_llm_tokens_total", "direction", "LLM tokens"),
    ("daarion_llm_cost_usd_total", "model", "LLM spend (USD) by model"),
    ("daarion_ratelimit_refusals_total", "kind", "Rate-limit and budget refusals"),
    ("daarion_tool_calls_total", "status", "Tool calls by status"),
    ("daarion_memory_queries_total", "status", "Memory queries"),
    ("daarion_agent_turns_total", "status", "Agent turns by status"),
    ("daarion_celery_tasks_total", "state", "Celery task runs by state"),
    ("daarion_celery_queue_length", "queue", "Celery queue lengths (now)"),
    ("daarion_embedding_queue_depth", "", "Memories waiting for an embedding (now)"),
]


def totals() -> list[dict[str, object]]:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(exposition().decode()):
        for sample in family.samples:
            for metric, label, _ in _TOTALS:
                if sample.name == metric:
                    sums[metric][sample.labels.get(label, "") if label else "total"] += sample.value
    return [{"title": title, "rows": sorted(sums.get(metric, {}).items())} for metric, _, title in _TOTALS]


def metrics_page(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Metrics",
        "grafana_url": settings.GRAFANA_DASHBOARD_URL,
        "metrics_on": settings.METRICS_ENABLED,
        "tracing_on": settings.TRACING_ENABLED,
        "totals": totals(),
    }
    return TemplateResponse(request, "admin/observability/metrics.html", context)
