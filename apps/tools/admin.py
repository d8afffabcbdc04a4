"""Django admin for toolcore. Saves go through apps.tools.services, like import and the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from apps.tools.models import McpServer, Tool, ToolCall
from apps.tools.services import (
    MCP_SERVER_FIELDS,
    TOOL_FIELDS,
    clean_secret_headers,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_sync,
    mcp_server_update,
    mcp_server_validate,
    secret_headers_of,
    tool_create,
    tool_delete,
    tool_update,
    tool_validate,
)
from apps.access.admin_history import ChangeHistoryMixin
from daarion.infra.crypto import mask
from daarion.infra.admin_forms import add_service_errors
from daarion.infra.errors import ValidationFailed
from daarion.infra.json_widget import JsonEditorWidget


def _lines(text: str) -> list[str]:
    return [item.strip() for item in (text or "").replace(",", "\n").splitlines() if item.strip()]


def _secrets_display(obj: Tool | McpServer) -> str:
    return "; ".join(f"{name}: {mask(value)}" for name, value in sorted(secret_headers_of(obj).items())) or "none"


class _AgentsAndSecretsForm(forms.ModelForm):
    """What the tool and MCP server forms share: the allowed agents as 'every agent' and a
    list, the write-only secret headers as 'Header: value' lines, and the owning service's
    check run on an unsaved copy, so its refusals land on the form's fields."""

    # allowed_agents is edited as these two: the model's field is left out of each form.
    every_agent = forms.BooleanField(required=False, initial=True)
    agents = forms.CharField(label="Allowed agents", required=False, widget=forms.Textarea(attrs={"rows": 4}))
    set_secret_headers = forms.CharField(
        label="Set secret headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Write-only. One 'Header: value' per line sets a header; 'Header:' alone removes it. "
        "Empty: keep the current ones.",
    )

    key_field = ""  # names the row; agents, audit rows and tool ids refer to it, so it is fixed once saved
    service_fields: tuple[str, ...] = ()  # what the service may set
    service_validate: Callable[[Any], None]  # the service's check of the whole row
    every_agent_help = ""
    agents_help = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["every_agent"].help_text = self.every_agent_help
        self.fields["agents"].help_text = self.agents_help
        if self.instance.pk:
            self.fields[self.key_field].disabled = True
            self.initial["every_agent"] = self.instance.allowed_agents is None
            self.initial["agents"] = "\n".join(self.instance.allowed_agents or [])

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns (typed Optional by the stubs)
        data["allowed_agents"] = None if data.get("every_agent") else _lines(data.get("agents", ""))
        if "agent_secret_headers" in data:
            data["agent_secret_headers"] = data["agent_secret_headers"] or {}
        secrets: dict[str, str | None] = {}
        for line in (data.get("set_secret_headers") or "").splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                self.add_error("set_secret_headers", f"line {line.strip()[:20]!r}…: expected 'Header: value'")
                continue
            secrets[name.strip()] = value.strip() or None
        try:
            clean_secret_headers({k: v for k, v in secrets.items() if v})
        except ValidationFailed as exc:
            self.add_error("set_secret_headers", exc.messages)
        data["secret_changes"] = secrets or None
        if self.errors:
            return data
        # The same rules the service applies, on a scratch copy, so errors land on the form.
        model = type(self.instance)
        probe = model(**{f.attname: getattr(self.instance, f.attname) for f in model._meta.concrete_fields})
        for name in self.service_fields:
            if name in data:
                setattr(probe, name, data[name])
        probe._state.adding = self.instance._state.adding  # so the unique check skips this row
        if not self.instance.pk:
            setattr(probe, self.key_field, data.get(self.key_field, ""))
        try:
            self.service_validate(probe)
        except ValidationFailed as exc:
            add_service_errors(self, exc, fields={"allowed_agents": "agents"})
        return data

    def changes(self) -> dict[str, Any]:
        """The fields for the service's create or update."""
        return {name: self.cleaned_data[name] for name in self.service_fields if name in self.cleaned_data}

    def secret_changes(self) -> dict[str, str | None] | None:
        """For an update: each header to set, or to remove (None)."""
        return self.cleaned_data.get("secret_changes")

    def new_secrets(self) -> dict[str, str] | None:
        """For a create: the headers to set."""
        return {k: v for k, v in (self.secret_changes() or {}).items() if v} or None


class ToolForm(_AgentsAndSecretsForm):
    key_field = "tool_id"
    service_fields = TOOL_FIELDS
    every_agent_help = "Any agent may use the tool (the list below is ignored)."
    agents_help = "One agent id per line. Empty with 'every agent' off: no agent may use it."

    class Meta:
        model = Tool
        fields = ["tool_id", *(name for name in TOOL_FIELDS if name != "allowed_agents")]
        widgets = {
            "input_schema": JsonEditorWidget(kind="tool.input_schema"),
            "output_schema": JsonEditorWidget(kind="tool.output_schema"),
            "agent_secret_headers": JsonEditorWidget(kind="string-map"),
        }

    service_validate = staticmethod(tool_validate)


@admin.register(Tool)
class ToolAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    form = ToolForm
    list_display = ["tool_id", "name", "executor", "enabled", "agents_display", "timeout", "version", "updated_at"]
    list_filter = ["executor", "enabled"]
    search_fields = ["tool_id", "name", "target"]
    readonly_fields = ["version", "secrets_display", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["tool_id", "name", "description", "enabled", "version"]}),
        ("Execution", {"fields": ["executor", "target", "timeout", "rate_limit_per_minute"]}),
        ("Contract", {"fields": ["input_schema", "output_schema", "read_only", "destructive", "idempotent"]}),
        ("Agents", {"fields": ["every_agent", "agents"]}),
        ("Secrets", {"fields": ["secrets_display", "set_secret_headers", "agent_secret_headers"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="agents")
    def agents_display(self, obj: Tool) -> str:
        return "every agent" if obj.allowed_agents is None else (", ".join(obj.allowed_agents) or "none")

    @admin.display(description="secret headers")
    def secrets_display(self, obj: Tool) -> str:
        return _secrets_display(obj)

    def save_model(self, request: HttpRequest, obj: Tool, form: ToolForm, change: bool) -> None:
        if change:
            # `obj` already holds the form's values; reload so the service sees what changed.
            current = Tool.objects.get(pk=obj.pk)
            saved = tool_update(tool=current, secret_headers=form.secret_changes(), **form.changes())
        else:
            saved = tool_create(tool_id=form.cleaned_data["tool_id"], secret_headers=form.new_secrets(), **form.changes())
        obj.pk = saved.pk
        obj.version = saved.version

    def delete_model(self, request: HttpRequest, obj: Tool) -> None:
        tool_delete(tool=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for tool in queryset:
            tool_delete(tool=tool)


class McpServerForm(_AgentsAndSecretsForm):
    key_field = "name"
    service_fields = MCP_SERVER_FIELDS
    every_agent_help = "Any agent may use its tools (the list below is ignored)."
    agents_help = "One agent id per line; its tools start with this list and follow its changes."

    class Meta:
        model = McpServer
        fields = ["name", *(name for name in MCP_SERVER_FIELDS if name != "allowed_agents")]
        widgets = {"agent_secret_headers": JsonEditorWidget(kind="string-map")}

    service_validate = staticmethod(mcp_server_validate)


@admin.register(McpServer)
class McpServerAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    form = McpServerForm
    list_display = ["name", "url", "prefix", "enabled", "protocol_version", "last_synced_at", "tool_count"]
    list_filter = ["enabled"]
    search_fields = ["name", "url", "prefix"]
    readonly_fields = [
        "protocol_version",
        "last_synced_at",
        "last_sync_error",
        "secrets_display",
        "tools_display",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "url", "transport", "prefix", "description", "enabled", "timeout"]}),
        ("Agents", {"fields": ["every_agent", "agents"]}),
        ("Secrets", {"fields": ["secrets_display", "set_secret_headers", "agent_secret_headers"]}),
        ("Sync", {"fields": ["protocol_version", "last_synced_at", "last_sync_error", "tools_display"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["sync_now"]

    @admin.display(description="tools")
    def tool_count(self, obj: McpServer) -> int:
        return obj.tools.count()

    @admin.display(description="tools")
    def tools_display(self, obj: McpServer) -> str:
        return (
            ", ".join(
                f"{t}{'' if on else ' (disabled)'}" for t, on in obj.tools.order_by("tool_id").values_list("tool_id", "enabled")
            )
            or "none"
        )

    @admin.display(description="secret headers")
    def secrets_display(self, obj: McpServer) -> str:
        return _secrets_display(obj)

    @admin.action(description="Sync tools now")
    def sync_now(self, request: HttpRequest, queryset) -> None:
        for server in queryset.order_by("name"):
            report = mcp_server_sync(server=server)
            if report.error:
                self.message_user(request, f"MCP server {server.name}: sync failed: {report.error}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"MCP server {server.name}: {len(report.created)} created, {len(report.updated)} "
                    f"updated, {len(report.disabled)} disabled, {len(report.unchanged)} unchanged",
                )

    def save_model(self, request: HttpRequest, obj: McpServer, form: McpServerForm, change: bool) -> None:
        if change:
            current = McpServer.objects.get(pk=obj.pk)
            saved = mcp_server_update(server=current, secret_headers=form.secret_changes(), **form.changes())
        else:
            saved = mcp_server_create(name=form.cleaned_data["name"], secret_headers=form.new_secrets(), **form.changes())
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: McpServer) -> None:
        mcp_server_delete(server=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for server in queryset:
            mcp_server_delete(server=server)


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tool_id", "agent_id", "microdao_id", "status", "error_type", "latency_ms", "request_id"]
    list_filter = ["status", "tool_id"]
    search_fields = ["tool_id", "agent_id", "request_id", "microdao_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolCall | None = None) -> bool:
        return False  # an audit trail is read-only

    def has_delete_permission(self, request: HttpRequest, obj: ToolCall | None = None) -> bool:
        return False  # ... and never lost
