"""The console's pages: thin edges over the services (playground streams, provider test,
tool try). Staff only, except the front page."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from apps.agents.models import Agent
from apps.agents.stream import HEADERS
from apps.console import playground as streams
from apps.console.forms import ToolTryForm
from apps.console.json_kinds import json_problems
from apps.llm.connection_test import TEST_CHANNEL, provider_test_connection
from apps.llm.models import LogicalModel, Provider
from apps.tools.models import Tool
from apps.tools.services import tool_call
from daarion.infra.errors import DaarionError, envelope

MAX_MESSAGE_CHARS = 32_000


def front_page(request: HttpRequest) -> HttpResponse:
    """`/`: what runs here and where to go; the demo credentials hint in development only."""
    context = {
        "development": not settings.PRODUCTION,
        "demo_file": settings.DATA_DIR / "demo.json",
        "has_demo": not settings.PRODUCTION and (settings.DATA_DIR / "demo.json").exists(),
    }
    return render(request, "console/front.html", context)


def _caller(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _staff_async(view: Callable[..., Awaitable[HttpResponseBase]]) -> Callable[..., Coroutine[Any, Any, HttpResponseBase]]:
    """admin_view for an async view: staff only (a JSON 403, the page's script shows it)."""

    @functools.wraps(view)
    async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = await request.auser()
        if not (user.is_active and user.is_staff):
            return JsonResponse(envelope("forbidden", "staff login required", None), status=403)
        request.console_user = user  # type: ignore[attr-defined]  # request.user is sync-only here
        return await view(request, *args, **kwargs)

    return wrapped


# --- playground --------------------------------------------------------------------------


def playground(request: HttpRequest) -> HttpResponse:
    models = list(LogicalModel.objects.filter(enabled=True, can_embed=False).order_by("name").values_list("name", flat=True))
    agents = list(Agent.objects.order_by("id").values_list("id", "name", "enabled"))
    chosen_agent = request.GET.get("agent", "")
    chosen_model = request.GET.get("model", "")
    context = {
        **admin.site.each_context(request),
        "title": "Playground",
        "models": models,
        "agents": agents,
        "kind": "model" if chosen_model and not chosen_agent else "agent" if chosen_agent or agents else "model",
        "chosen_agent": chosen_agent,
        "chosen_model": chosen_model,
        "stream_url": reverse("console:playground-stream"),
    }
    return render(request, "console/playground.html", context)


def _bad(message: str, status: int = 422, type: str = "validation_error") -> JsonResponse:
    return JsonResponse(envelope(type, message, None), status=status)


@never_cache
@csrf_protect
@require_POST
@_staff_async
async def playground_stream(request: HttpRequest) -> HttpResponseBase:
    """POST kind=model|agent, target, message[, session_id]: the answer as an SSE stream."""
    kind, target = request.POST.get("kind", ""), request.POST.get("target", "").strip()
    message = request.POST.get("message", "")
    if kind not in ("model", "agent"):
        return _bad("kind must be 'model' or 'agent'")
    if not target:
        return _bad(f"choose a {kind}")
    if not message.strip() or len(message) > MAX_MESSAGE_CHARS:
        return _bad(f"the message must be 1-{MAX_MESSAGE_CHARS} characters")
    user = f"user:{request.console_user.get_username()}"  # type: ignore[attr-defined]
    headers = {**HEADERS}
    if kind == "model":
        body = streams.model_stream(model=target, message=message, user=user)
    else:
        try:
            run_id, session_id = await streams.agent_run_start(
                agent_id=target, message=message, session_id=request.POST.get("session_id") or None, user=user
            )
        except DaarionError as exc:
            return JsonResponse(exc.to_envelope(), status=exc.status)
        agent = await Agent.objects.filter(pk=target).values_list("model", flat=True).afirst()
        body = streams.agent_stream(run_id=run_id, model=agent or "")
        headers.update(
            {"X-Run-Id": run_id, "X-Session-Id": session_id, "X-Run-Admin-Url": reverse("admin:agents_run_change", args=[run_id])}
        )
    return StreamingHttpResponse(body, content_type="text/event-stream", headers=headers)


# --- provider: test connection -------------------------------------------------------------


def provider_test(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(Provider, pk=pk)
    checks = None
    if request.method == "POST":
        checks = async_to_sync(provider_test_connection)(provider_name=provider.name)
    context = {
        **admin.site.each_context(request),
        "title": f"Test connection: {provider.name}",
        "provider": provider,
        "checks": checks,
        "usage_url": reverse("admin:llm_usagerecord_changelist") + f"?q={TEST_CHANNEL}",
    }
    return render(request, "console/provider_test.html", context)


# --- tool: try -----------------------------------------------------------------------------


def _agents_for(tool: Tool) -> list[str]:
    everyone = list(Agent.objects.order_by("id").values_list("id", flat=True))
    return everyone if tool.allowed_agents is None else [a for a in tool.allowed_agents if a in everyone]


def tool_try(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(Tool, pk=pk)
    data = request.POST if request.method == "POST" else None
    form = ToolTryForm(data, input_schema=tool.input_schema, agents=_agents_for(tool))
    outcome = None
    if data is not None and form.is_valid():
        outcome = async_to_sync(tool_call)(
            tool_id=tool.tool_id,
            agent_id=form.cleaned_data["agent_id"],
            microdao_id=form.cleaned_data["microdao_id"],
            args=form.args(),
            context={"caller": _caller(request), "door": "admin"},
        )
        if outcome.error_type == "invalid_args" and isinstance(outcome.details, list):
            form.add_tool_errors(outcome.details)
    context = {
        **admin.site.each_context(request),
        "title": f"Try {tool.tool_id}",
        "tool": tool,
        "form": form,
        "outcome": outcome,
        "result_json": json.dumps(outcome.result, ensure_ascii=False, indent=2, default=str) if outcome else "",
        "details_json": json.dumps(outcome.details, ensure_ascii=False, indent=2, default=str)
        if outcome and outcome.details
        else "",
        "audit_url": reverse("admin:tools_toolcall_changelist") + f"?q={outcome.request_id}" if outcome else "",
        "output_schema_json": json.dumps(tool.output_schema, ensure_ascii=False, indent=2) if tool.output_schema else "",
    }
    return render(request, "console/tool_try.html", context)


# Sync views through the admin's own wrapper (login, staff, never_cache, csrf).
playground_page = admin.site.admin_view(playground)
provider_test_page = admin.site.admin_view(provider_test)
tool_try_page = admin.site.admin_view(tool_try)


# --- JSON fields: validation as you type ------------------------------------------------------------


@require_POST
def json_validate(request: HttpRequest) -> JsonResponse:
    """POST {"kind", "text"}: {"errors": [{"path", "message"}]} (the same checks as on save)."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _bad('the body must be JSON: {"kind": ..., "text": ...}', status=400, type="bad_request")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not isinstance(body.get("kind", ""), str):
        return _bad('expected {"kind": string, "text": string}')
    return JsonResponse({"errors": json_problems(kind=body.get("kind") or "json", text=body["text"])})


json_validate_view = admin.site.admin_view(json_validate)
