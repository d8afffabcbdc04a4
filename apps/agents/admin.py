"""Django admin for agents: blueprints edited through the same services as the API and the
import command; secrets write-only and shown masked; runs shown with their chunks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from apps.agents.models import Agent, AgentSecret, Run
from apps.agents.runs.chunks import stream_key
from apps.agents.runs.services import arun_cancel
from apps.agents.runtime import agent_load, agent_unload, runtime_state, runtime_states
from apps.agents.selectors import agent_get
from apps.agents.services import (
    EDITABLE_FIELDS,
    agent_create,
    agent_delete,
    agent_secret_delete,
    agent_secret_set,
    agent_update,
    agent_validate,
)
from apps.access.admin_history import ChangeHistoryMixin
from daarion.infra.crypto import mask
from daarion.infra.errors import DaarionError, ValidationFailed
from daarion.infra.json_widget import JsonEditorWidget
from daarion.infra.redis_client import get_redis


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ["id", *EDITABLE_FIELDS]
        widgets = {"character": JsonEditorWidget(kind="agent.character"), "memory_kinds": JsonEditorWidget(kind="strings")}

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # Django's private hook, absent from the stubs; copies the cleaned values onto self.instance
        if self.errors:
            return
        # The service's rules, shown on the form instead of failing on save.
        try:
            agent_validate(self.instance)
        except ValidationFailed as exc:
            for item in exc.details or []:
                field = item["path"].split(".")[0]
                self.add_error(field if field in self.fields else None, item["message"])


class AgentSecretForm(forms.ModelForm):
    # Write-only: the stored value is never rendered back into the page.
    value = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current value.",
    )

    class Meta:
        model = AgentSecret
        fields = ["name", "value"]

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns (typed Optional by the stubs)
        if not self.instance.pk and not data.get("value") and not data.get("DELETE"):
            self.add_error("value", "a new secret needs a value")
        return data


class AgentSecretInline(admin.TabularInline):
    model = AgentSecret
    form = AgentSecretForm
    extra = 0
    fields = ["name", "value", "masked", "updated_at"]
    readonly_fields = ["masked", "updated_at"]

    @admin.display(description="current value")
    def masked(self, obj: AgentSecret) -> str:
        return mask(obj.value) if obj.pk else "-"


@admin.register(Agent)
class AgentAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    history_related = (("agents.AgentSecret", "{pk}:", "[^:]+"),)  # its secrets' records (values never shown)
    form = AgentForm
    list_display = ["id", "name", "microdao_id", "model", "enabled", "loaded", "version", "chat_link"]
    list_filter = ["enabled", "model"]
    actions = ["load_agents", "unload_agents"]
    search_fields = ["id", "name", "microdao_id"]
    readonly_fields = ["version", "created_at", "updated_at"]
    inlines = [AgentSecretInline]
    fieldsets = [
        (None, {"fields": ["id", "name", "microdao_id", "enabled", "model", "version"]}),
        ("Character", {"fields": ["system_prompt", "character"]}),
        (
            "Behaviour",
            {
                "fields": [
                    "memory_recall_limit",
                    "memory_kinds",
                    "max_tool_steps",
                    "tool_mode",
                    "temperature",
                    "history_turns",
                    "history_tokens",
                ]
            },
        ),
        ("Timestamps", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Agent | None = None) -> list[str]:
        # The id is what tokens, memories and tool permissions refer to: fixed once created.
        return [*self.readonly_fields, "id"] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.cleaned_data}
        if change:
            saved = agent_update(agent=agent_get(obj.pk), **values)
        else:
            saved = agent_create(agent_id=form.cleaned_data["id"], **values)
        obj.version = saved.version

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset, change: bool) -> None:
        agent = form.instance
        # Admin's change message reads these; the services did the saving.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline in formset.forms:
            if not hasattr(inline, "cleaned_data") or not inline.cleaned_data:
                continue
            data = inline.cleaned_data
            if data.get("DELETE"):
                if inline.instance.pk:
                    agent_secret_delete(agent=agent, name=inline.instance.name)
                continue
            name, value = data.get("name"), data.get("value")
            if inline.instance.pk and name != inline.instance.name:
                # A rename: the value moves with it unless a new one was typed.
                old = inline.instance
                agent_secret_set(agent=agent, name=name, value=value or old.value)
                agent_secret_delete(agent=agent, name=old.name)
            elif value:
                agent_secret_set(agent=agent, name=name, value=value)

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        agent_delete(agent=obj)

    # --- runtime: loaded column, load/unload actions, chat link (the console) ---
    @admin.display(description="loaded", boolean=True)
    def loaded(self, obj: Agent) -> bool:
        # Replaced per page by get_list_display's one-read version; kept for admin's checks.
        state = async_to_sync(runtime_state)(obj.pk)
        return obj.enabled and state.loaded

    def get_list_display(self, request: HttpRequest) -> list:
        # One Redis read per page, not one per row; bound to this request, not to the
        # (shared) ModelAdmin instance.
        states = async_to_sync(runtime_states)()

        @admin.display(description="loaded", boolean=True)
        def loaded(obj: Agent) -> bool:
            state = states.get(obj.pk)
            # No state: loaded (see apps.agents.runtime); a disabled agent cannot take a turn.
            return obj.enabled and (state is None or state.loaded)

        return [loaded if name == "loaded" else name for name in super().get_list_display(request)]

    @admin.display(description="chat")
    def chat_link(self, obj: Agent) -> str:
        from django.urls import reverse

        return format_html('<a href="{}?agent={}">chat</a>', reverse("console:playground"), obj.pk)

    def _runtime_action(
        self, request: HttpRequest, queryset: QuerySet[Agent], change: Callable[..., Awaitable[object]], verb: str
    ) -> None:
        done, refused = [], []
        for agent in queryset.order_by("pk"):
            try:
                async_to_sync(change)(agent_id=agent.pk)
                done.append(agent.pk)
            except DaarionError as exc:
                refused.append(f"{agent.pk}: {exc.message}")
        if done:
            self.message_user(request, f"{verb}: {', '.join(done)}")
        for line in refused:
            self.message_user(request, line, level=messages.WARNING)

    @admin.action(description="Load the selected agents (they may chat)")
    def load_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._runtime_action(request, queryset, agent_load, "loaded")

    @admin.action(description="Unload the selected agents (they refuse turns until loaded)")
    def unload_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._runtime_action(request, queryset, agent_unload, "unloaded")

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for agent in queryset:
            agent_delete(agent=agent)


def _pretty(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str) if value is not None else "—"


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs are records: read-only, never deleted here; a running one can be cancelled."""

    list_display = ["id", "agent_id", "session_id", "status", "step_count", "created_at", "duration"]
    list_filter = ["status", "agent_id"]
    search_fields = ["id", "session_id", "=agent_id", "=idempotency_key", "=request_id"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs"]
    fields = readonly_fields = (
        "id",
        "agent_id",
        "session_id",
        "status",
        "strategy",
        "executor",
        "created_at",
        "dispatched_at",
        "started_at",
        "finished_at",
        "step_count",
        "idempotency_key",
        "request_id",
        "token_name",
        "request_json",
        "reply",
        "usage_json",
        "error_json",
        "message_json",
        "chunks",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        if run.started_at and run.finished_at:
            return f"{(run.finished_at - run.started_at).total_seconds():.2f} s"
        return "—"

    @admin.display(description="request")
    def request_json(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.request))

    @admin.display(description="reply")
    def reply(self, run: Run) -> str:
        return (run.result or {}).get("reply") or "—"

    @admin.display(description="usage")
    def usage_json(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.usage))

    @admin.display(description="error")
    def error_json(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.error))

    @admin.display(description="message (UIMessage)")
    def message_json(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", _pretty(run.message))

    @admin.display(description="chunks (Redis stream)")
    def chunks(self, run: Run) -> str:
        entries = get_redis().xrange(stream_key(run.pk), count=500)
        if not entries:
            return "expired or not written yet (the message above is the record)"
        lines = [f"{entry_id.decode()}  {fields.get(b'c', b'(end)').decode()}" for entry_id, fields in entries]
        return format_html("<pre style='max-height: 30em; overflow: auto'>{}</pre>", "\n".join(lines))

    @admin.action(description="Cancel the selected runs (queued or running)")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        done = 0
        for run in queryset:
            if run.ended:
                continue
            async_to_sync(arun_cancel)(run=run)
            done += 1
        self.message_user(request, f"cancelled {done} run(s); ended runs were left as they are")
