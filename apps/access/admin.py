"""Admin for service tokens. Creating one shows the secret once, in the success message."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.access.choices import Scope
from daarion.infra.errors import ValidationFailed
from apps.access.admin_history import ChangeHistoryMixin
from apps.access.models import ChangeRecord, ServiceToken
from daarion.observability.token_usage import token_usage
from apps.access.services import clean_token_agents, service_token_create, service_token_delete, service_token_update


_ANY_AGENT, _LISTED_AGENTS = "any", "listed"


class ServiceTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    # Explicit, because "no agent" ([]: every agent it was bound to was deleted) and "any
    # agent" (null) must not look alike: an empty box saved as "any" would widen the token.
    acts_for = forms.ChoiceField(
        label="Acts for",
        required=False,
        choices=[(_ANY_AGENT, "any agent"), (_LISTED_AGENTS, "only the agents listed below (none listed: no agent)")],
        widget=forms.RadioSelect,
    )
    agents = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One agent id per line (or comma-separated); each must name an existing agent.",
    )

    class Meta:
        model = ServiceToken
        fields = ["name", "scopes", "acts_for", "agents", "enabled", "expires_at"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        bound = self.instance.pk is not None and self.instance.agents is not None
        self.initial["acts_for"] = _LISTED_AGENTS if bound else _ANY_AGENT
        if bound:
            self.initial["agents"] = "\n".join(self.instance.agents)

    def clean_agents(self) -> list[str] | None:
        text = self.cleaned_data.get("agents") or ""
        items = [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]
        acts_for = self.cleaned_data.get("acts_for")
        if acts_for == _ANY_AGENT:
            if items:
                raise ValidationError("clear the list, or choose 'only the agents listed below'")
            return None
        if not acts_for and not items:
            # A post without the choice (not the rendered form): an empty box keeps the kind
            # of binding the token has, so it can never turn a bound token into an unbound one.
            bound = self.instance.pk is not None and self.instance.agents is not None
            return [] if bound else None
        try:
            return clean_token_agents(items)
        except ValidationFailed as exc:
            raise ValidationError(exc.messages) from exc


@admin.register(ServiceToken)
class ServiceTokenAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    form = ServiceTokenForm
    list_display = ["name", "prefix", "scope_list", "agent_list", "enabled", "expires_at", "last_used_at", "usage_30d"]
    list_filter = ["enabled"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "last_used_at", "created_at", "usage_30d"]

    @admin.display(description="LLM usage (30 days)")
    def usage_30d(self, obj: ServiceToken) -> str:
        return token_usage(obj.pk) if obj.pk else "-"

    @admin.display(description="scopes")
    def scope_list(self, obj: ServiceToken) -> str:
        return ", ".join(obj.scopes or [])

    @admin.display(description="agents")
    def agent_list(self, obj: ServiceToken) -> str:
        return "any" if obj.agents is None else ", ".join(obj.agents) or "none"

    def save_model(self, request: HttpRequest, obj: ServiceToken, form: ServiceTokenForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            service_token_update(
                token=ServiceToken.objects.get(pk=obj.pk),  # the stored row: `obj` holds the form's values
                name=data["name"],
                scopes=data["scopes"],
                agents=data["agents"],
                enabled=data["enabled"],
                expires_at=data["expires_at"],
            )
            return
        issued = service_token_create(
            name=data["name"],
            scopes=data["scopes"],
            agents=data["agents"],
            expires_at=data["expires_at"],
            enabled=data["enabled"],
        )
        obj.pk = issued.token.pk
        messages.warning(request, f"Token for {obj.name!r}: {issued.raw} — copy it now, it is not shown again.")

    def delete_model(self, request: HttpRequest, obj: ServiceToken) -> None:
        service_token_delete(token=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for token in queryset:
            service_token_delete(token=token)


@admin.register(ChangeRecord)
class ChangeRecordAdmin(admin.ModelAdmin):
    """The change log: read-only, searchable by object and actor."""

    list_display = ["created_at", "action", "object_type", "object_id", "object_repr", "actor", "source"]
    list_filter = ["action", "source", "object_type"]
    search_fields = ["object_id", "object_repr", "actor"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ChangeRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
