"""The admin's usage dashboard: charts of calls, tokens, cost, latency and errors per day, by
agent or by model. Mounted by UsageRecordAdmin.get_urls() behind admin_site.admin_view."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from apps.llm.models import UsageRecord
from apps.llm.usage_reports import GROUPINGS, RANGES, usage_dashboard_data


def _choice(value: str | None, allowed: tuple | list, default):  # noqa: ANN001, ANN202 - str or int
    """A query parameter limited to known values; anything else falls back to the default
    (a hand-edited URL shows the default view rather than an error page)."""
    for option in allowed:
        if str(option) == (value or "").strip():
            return option
    return default


def usage_dashboard(request: HttpRequest) -> HttpResponse:
    """`?days=7|30|90&by=agent|model[&agent_id=..][&microdao_id=..][&format=json]`."""
    if not request.user.has_perm("llm.view_usagerecord"):
        raise PermissionDenied
    days = _choice(request.GET.get("days"), RANGES, 30)
    group_by = _choice(request.GET.get("by"), list(GROUPINGS), "agent")
    agent_id = (request.GET.get("agent_id") or "").strip()[:200]
    microdao_id = (request.GET.get("microdao_id") or "").strip()[:200]
    data = usage_dashboard_data(days=days, group_by=group_by, agent_id=agent_id, microdao_id=microdao_id)
    if request.GET.get("format") == "json":
        return JsonResponse(data)
    opts = UsageRecord._meta
    context = {
        **admin.site.each_context(request),
        "title": "LLM usage dashboard",
        "opts": opts,
        "data": data,
        "ranges": RANGES,
        "groupings": [("agent", "agent"), ("model", "model")],
        "days": days,
        "group_by": group_by,
        "agent_id": agent_id,
        "microdao_id": microdao_id,
    }
    return TemplateResponse(request, "admin/llm/usage_dashboard.html", context)
