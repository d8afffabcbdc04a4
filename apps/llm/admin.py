"""Django admin for the LLM registry and usage. Saves go through apps.llm.services, so the
admin obeys the same rules as the import command and the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Avg, Count, Q, Sum
from django.http import HttpRequest

from apps.llm import services
from apps.llm.choices import BudgetPeriod
from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy, UsageRecord
from apps.llm.selectors import deployment_cooldowns, error_stats, policy_spend, usage_daily_totals
from apps.access.admin_history import ChangeHistoryMixin
from daarion.infra.crypto import mask
from daarion.infra.json_widget import JsonEditorWidget
from daarion.infra.errors import DaarionError, ValidationFailed
from daarion.infra.admin_forms import add_service_errors


class ProviderForm(forms.ModelForm):
    # Write-only: the stored key is never sent to the browser; empty keeps it.
    # Not named api_key: a form field named like the model field would be copied onto the row.
    new_api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "new_api_key",
            "api_key_env",
            "timeout_seconds",
            "max_retries",
            "extra_headers",
            "enabled",
        ]
        widgets = {"extra_headers": JsonEditorWidget(kind="string-map")}  # the console's JSON editor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["name"].disabled = True
            if self.instance.api_key:
                self.fields["new_api_key"].help_text = f"Stored: {mask(self.instance.api_key)}. Leave empty to keep it."


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    fields = ["provider", "upstream_model", "weight", "rpm_limit", "tpm_limit", "enabled"]


class LogicalModelForm(forms.ModelForm):
    fallbacks = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Logical model names, comma-separated, tried in order when every deployment fails.",
    )

    class Meta:
        model = LogicalModel
        fields = [
            "name",
            "description",
            "fallbacks",
            "context_window",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "can_embed",
            "drop_unsupported_params",
            "enabled",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["fallbacks"] = ", ".join(self.instance.fallbacks or [])
            self.fields["name"].disabled = True

    def clean_fallbacks(self) -> list[str]:
        text = self.cleaned_data.get("fallbacks") or ""
        return [item.strip() for item in text.split(",") if item.strip()]


class _ServiceAdmin(ChangeHistoryMixin, admin.ModelAdmin):
    """Turns service errors into form errors or messages instead of 500 pages."""

    def _report(self, request: HttpRequest, exc: DaarionError) -> None:
        self.message_user(request, exc.message, level=messages.ERROR)


@admin.register(Provider)
class ProviderAdmin(_ServiceAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "key_source", "timeout_seconds", "max_retries", "enabled", "health"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["health"]

    @admin.display(description="health (last hour)")
    def health(self, obj: Provider) -> str:
        if obj.pk is None:
            return "-"
        ids = list(obj.deployments.values_list("id", flat=True))
        return health_text(error_stats(field="provider", names=[obj.name])[obj.name], deployment_cooldowns(deployment_ids=ids))

    @admin.display(description="API key")
    def key_source(self, obj: Provider) -> str:
        if obj.api_key:
            return f"stored {mask(obj.api_key)}"
        return f"env {obj.api_key_env}" if obj.api_key_env else "none"

    def save_model(self, request: HttpRequest, obj: Provider, form: ProviderForm, change: bool) -> None:
        data = form.cleaned_data
        key = "" if data.get("clear_api_key") else (data.get("new_api_key") or None)
        fields = {
            k: data[k] for k in ["kind", "base_url", "api_key_env", "timeout_seconds", "max_retries", "extra_headers", "enabled"]
        }
        if change:
            # `obj` already holds the form's values; the stored row, so the service sees what changed.
            services.provider_update(provider=Provider.objects.get(pk=obj.pk), api_key=key, **fields)
        else:
            created = services.provider_create(name=data["name"], api_key=key or "", **fields)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        try:
            services.provider_delete(provider=obj)
        except DaarionError as exc:
            self._report(request, exc)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Provider | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        return _validating(form, lambda f: _provider_check(f, obj))


def health_text(stats: dict[str, Any], cooling: dict[int, Any]) -> str:
    """One line for operators: cooldowns, the error rate of the last hour, the last error."""
    parts = []
    if cooling:
        until = max(cooling.values())
        parts.append(f"{len(cooling)} deployment(s) cooling down until {until:%H:%M:%S} UTC")
    calls, errors = stats["calls"], stats["errors"]
    parts.append(f"{errors}/{calls} calls failed ({errors / calls:.0%})" if calls else "no calls")
    last = stats["last_error"]
    if last:
        parts.append(f"last error {last['error_type'] or 'error'} at {last['created_at']:%Y-%m-%d %H:%M} UTC")
    return "; ".join(parts)


def _provider_check(form: forms.ModelForm, obj: Provider | None) -> None:
    # Runs the service's rules on an unsaved copy, so errors land on the form's fields.
    data = form.cleaned_data
    probe = Provider(
        pk=obj.pk if obj else None,
        name=data.get("name") or (obj.name if obj else ""),
        kind=data.get("kind", ""),
        base_url=data.get("base_url", ""),
        api_key_env=data.get("api_key_env", ""),
        timeout_seconds=data.get("timeout_seconds") or 60,
        max_retries=data.get("max_retries") or 0,
        extra_headers=data.get("extra_headers") or {},
    )
    probe._state.adding = obj is None  # uniqueness against itself is not a conflict
    services.provider_validate(probe)  # the same rules, run before the save


def _validating(form_class: type[forms.ModelForm], check) -> type[forms.ModelForm]:  # noqa: ANN001
    class Checked(form_class):  # type: ignore[misc, valid-type]
        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            if not self.errors:
                try:
                    check(self)
                except ValidationFailed as exc:
                    add_service_errors(self, exc)
            return cleaned

    return Checked


@admin.register(LogicalModel)
class LogicalModelAdmin(_ServiceAdmin):
    history_related = (("llm.Deployment", "{pk}→", ".*"),)  # its deployments' records in its History
    form = LogicalModelForm
    inlines = [DeploymentInline]
    list_display = [
        "name",
        "deployment_list",
        "fallback_list",
        "context_window",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "can_embed",
        "enabled",
        "health",
    ]
    list_filter = ["enabled", "can_embed"]
    search_fields = ["name", "description"]
    readonly_fields = ["health"]

    @admin.display(description="health (last hour)")
    def health(self, obj: LogicalModel) -> str:
        if obj.pk is None:
            return "-"
        ids = [d.id for d in obj.deployments.all()]
        return health_text(
            error_stats(field="logical_model", names=[obj.name])[obj.name], deployment_cooldowns(deployment_ids=ids)
        )

    @admin.display(description="deployments")
    def deployment_list(self, obj: LogicalModel) -> str:
        return ", ".join(f"{d.provider.name}/{d.upstream_model}×{d.weight}" for d in obj.deployments.all())

    @admin.display(description="fallbacks")
    def fallback_list(self, obj: LogicalModel) -> str:
        return " → ".join(obj.fallbacks or []) or "—"

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201
        return super().get_queryset(request).prefetch_related("deployments__provider")

    def get_form(
        self, request: HttpRequest, obj: LogicalModel | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)

        def check(f: forms.ModelForm) -> None:
            name = f.cleaned_data.get("name") or (obj.name if obj else "")
            services.clean_fallbacks(name, f.cleaned_data.get("fallbacks") or [])

        return _validating(form, check)

    def save_model(self, request: HttpRequest, obj: LogicalModel, form: LogicalModelForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            k: data[k]
            for k in [
                "fallbacks",
                "context_window",
                "input_price_per_mtok",
                "output_price_per_mtok",
                "can_embed",
                "enabled",
                "description",
                "drop_unsupported_params",
            ]
        }
        if change:
            services.logical_model_update(model=LogicalModel.objects.get(pk=obj.pk), **fields)
        else:
            created = services.logical_model_create(name=data["name"], **fields)
            obj.pk = created.pk

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # noqa: ANN001
        """The inline's rows through the one deployment writer: the stored rows, with the
        form's edits, deletions and additions, become the model's list (rows the form did not
        touch stay as stored)."""
        formset.save(commit=False)  # puts each form's edits on its instance
        deleted = {d.pk for d in formset.deleted_objects if d.pk}
        edited = {row.pk: row for row, _fields in formset.changed_objects}
        added = formset.new_objects
        fields = ["upstream_model", "weight", "rpm_limit", "tpm_limit", "enabled"]
        wanted = [
            {"id": row.pk, "provider": row.provider, **{k: getattr(row, k) for k in fields}}
            for row in (edited.get(d.pk, d) for d in form.instance.deployments.select_related("provider").order_by("id"))
            if row.pk not in deleted
        ]
        wanted += [{"provider": d.provider, **{k: getattr(d, k) for k in fields}} for d in added]
        services.logical_model_deployments_sync(model=form.instance, deployments=wanted)

    def delete_model(self, request: HttpRequest, obj: LogicalModel) -> None:
        try:
            services.logical_model_delete(model=obj)
        except DaarionError as exc:
            self._report(request, exc)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(RateLimitPolicy)
class RateLimitPolicyAdmin(_ServiceAdmin):
    list_display = ["scope", "subject", "rpm", "tpm", "max_concurrent", "budget", "spent", "enabled"]
    list_filter = ["scope", "enabled", "budget_period"]
    search_fields = ["subject"]
    fields = ["scope", "subject", "rpm", "tpm", "max_concurrent", "budget_usd", "budget_period", "spent", "enabled"]

    @admin.display(description="spent this period (USD)")
    def spent(self, obj: RateLimitPolicy) -> str:
        if obj.pk is None:
            return "-"
        spent = policy_spend(policy=obj)
        if spent is None:
            return "per agent (see the usage dashboard)"
        text = f"{spent.quantize(Decimal('0.0001')).normalize():f} this {obj.budget_period}"
        if obj.budget_usd:
            text += f" of {obj.budget_usd.normalize():f} ({float(spent / obj.budget_usd) * 100:.0f}%)"
        return text

    @admin.display(description="budget (USD)", ordering="budget_usd")
    def budget(self, obj: RateLimitPolicy) -> str:
        return f"{obj.budget_usd.normalize():f} per {obj.budget_period}" if obj.budget_usd is not None else "-"

    def formfield_for_dbfield(self, db_field, request, **kwargs):  # noqa: ANN001, ANN201 - Django's signature
        if db_field.name == "budget_usd":
            # Without the column's digit limits: the service's check words a budget with too
            # many places or digits the way every other door does, instead of Django's text.
            return forms.DecimalField(required=False, label="Budget (USD)", help_text=db_field.help_text)
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "budget_period" and field is not None:
            # A post without it (a script, a form from before budgets) keeps the stored or
            # default period, as the API's PATCH and a document without a budget do.
            field.required = False
        return field

    def get_readonly_fields(self, request: HttpRequest, obj: RateLimitPolicy | None = None) -> list[str]:
        return ["scope", "subject", "spent"] if obj else ["spent"]

    def get_form(
        self, request: HttpRequest, obj: RateLimitPolicy | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)

        def check(f: forms.ModelForm) -> None:
            # The service's rules (an agent policy names an existing agent, no 0 limits) on
            # an unsaved copy, so a refusal lands on its field instead of a 500 page. Scope
            # and subject are read-only on a stored policy: take them from it.
            data = f.cleaned_data
            probe = RateLimitPolicy(
                pk=obj.pk if obj else None,
                scope=obj.scope if obj else data.get("scope", ""),
                subject=obj.subject if obj else data.get("subject", ""),
                **{k: data.get(k) for k in ("rpm", "tpm", "max_concurrent", "budget_usd")},
                budget_period=data.get("budget_period") or (obj.budget_period if obj else BudgetPeriod.MONTH),
                enabled=data.get("enabled", True),
            )
            probe._state.adding = obj is None  # uniqueness against itself is not a conflict
            services.rate_limit_policy_validate(probe)  # the same rules, run before the save

        return _validating(form, check)

    def save_model(self, request: HttpRequest, obj: RateLimitPolicy, form, change: bool) -> None:  # noqa: ANN001
        limits = {k: getattr(obj, k) for k in ["rpm", "tpm", "max_concurrent", "budget_usd", "budget_period", "enabled"]}
        if change:
            services.rate_limit_policy_update(policy=RateLimitPolicy.objects.get(pk=obj.pk), **limits)
        else:
            created = services.rate_limit_policy_create(scope=obj.scope, subject=obj.subject, **limits)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: RateLimitPolicy) -> None:
        services.rate_limit_policy_delete(policy=obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            services.rate_limit_policy_delete(policy=obj)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Read-only: usage is written by the proxy. The changelist shows per-day totals of the
    filtered rows, per agent and per model."""

    # Fits 1440 px with cost and latency in view; the rest of a record is in its change view.
    list_display = ["created_at", "agent_id", "logical_model", "status", "total_tokens", "cost", "latency_ms"]
    list_filter = ["status", "stream", "endpoint", "logical_model", "provider", "created_at"]
    search_fields = ["request_id", "agent_id", "microdao_id", "channel_id"]
    date_hierarchy = "created_at"
    # The app's changelist (per-day totals) plus a link to the usage dashboard.
    change_list_template = "admin/llm/usagerecord/change_list_dashboard.html"
    list_per_page = 100

    def get_urls(self):  # noqa: ANN201 - Django's signature
        from django.urls import path

        from apps.llm.dashboard import usage_dashboard

        dashboard = path("dashboard/", self.admin_site.admin_view(usage_dashboard), name="llm_usagerecord_dashboard")
        return [dashboard, *super().get_urls()]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False  # usage is billing: never lost

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):  # noqa: ANN201
        response = super().changelist_view(request, extra_context=extra_context)
        # A TemplateResponse; a redirect (after a bulk action, say) has no context to add to.
        context = getattr(response, "context_data", None) or {}
        try:
            queryset = context["cl"].queryset
        except (AttributeError, KeyError):
            return response
        totals = queryset.aggregate(
            calls=Count("id"),
            errors=Count("id", filter=~Q(status="ok")),
            tokens=Sum("total_tokens"),
            cost=Sum("cost"),
            avg_latency_ms=Avg("latency_ms"),
        )
        context["usage_totals"] = totals
        context["per_agent"] = usage_daily_totals(queryset=queryset, group_by="agent_id")[:60]
        context["per_model"] = usage_daily_totals(queryset=queryset, group_by="logical_model")[:60]
        return response
