"""Request and response shapes of the management API (`XIn` / `XOut`, explicit fields).

Input serializers only check shapes and types; every rule of the registries lives in the
owning app's services, which the views call. Secrets are write-only fields on the way in
and `{"set": ..., "updated_at": ...}` on the way out.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.agents.choices import ToolMode
from apps.agents.models import Agent
from apps.agents.services import EDITABLE_FIELDS
from apps.llm.choices import BudgetPeriod, ProviderKind, RateLimitScope
from apps.llm.models import Deployment, LogicalModel, Provider, RateLimitPolicy
from apps.memory.choices import EmbeddingBackend
from apps.memory.models import EmbeddingModel
from apps.registry.selectors import secret_changed_at
from apps.tools.choices import Executor, McpTransport
from apps.tools.models import McpServer, Tool
from apps.tools.services import MCP_SERVER_FIELDS, TOOL_FIELDS, secret_header_names
from apps.access.models import ChangeRecord


class SecretStateOut(serializers.Serializer):
    set = serializers.BooleanField()
    updated_at = serializers.DateTimeField(allow_null=True)


# A map of header name to its state. A serializer, not a hand-written "$ref": spectacular
# emits a component only for serializers it meets, so a bare reference would dangle.
_SECRET_STATES = serializers.DictField(child=SecretStateOut())


def _state(is_set: bool, updated_at: Any) -> dict[str, Any]:
    return {"set": bool(is_set), "updated_at": updated_at if is_set else None}


# --- providers ---------------------------------------------------------------------------


class ProviderKeyOut(SecretStateOut):
    source = serializers.ChoiceField(choices=["stored", "env", "none"], help_text="where the key comes from")  # type: ignore[assignment]  # a declared field: DRF's metaclass takes it off the class


class ProviderOut(serializers.ModelSerializer):
    api_key = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key",
            "api_key_env",
            "timeout_seconds",
            "max_retries",
            "extra_headers",
            "enabled",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(ProviderKeyOut)
    def get_api_key(self, obj: Provider) -> dict[str, Any]:
        stored = bool(obj.api_key)
        state = _state(stored, secret_changed_at(instance=obj, field="api_key") if stored else None)
        state["source"] = "stored" if stored else ("env" if obj.api_key_env else "none")
        return state


class ProviderIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    base_url = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    api_key = serializers.CharField(
        write_only=True,
        allow_blank=True,
        allow_null=True,
        required=False,
        trim_whitespace=True,
        help_text='write-only; omitted or null keeps the stored key, "" clears it',
    )
    api_key_env = serializers.CharField(max_length=128, allow_blank=True, required=False, default="")
    timeout_seconds = serializers.FloatField(required=False, default=60.0)
    max_retries = serializers.IntegerField(min_value=0, required=False, default=2)
    extra_headers = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    enabled = serializers.BooleanField(required=False, default=True)


# --- logical models ----------------------------------------------------------------------


class DeploymentOut(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.name")

    class Meta:
        model = Deployment
        fields = ["id", "provider", "upstream_model", "weight", "rpm_limit", "tpm_limit", "enabled"]


class DeploymentIn(serializers.Serializer):
    provider = serializers.CharField(max_length=100, help_text="provider name")
    upstream_model = serializers.CharField(max_length=200)
    weight = serializers.IntegerField(min_value=0, required=False, default=1)
    rpm_limit = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    tpm_limit = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    enabled = serializers.BooleanField(required=False, default=True)

    def to_representation(self, instance: Any) -> Any:
        # The browsable API fills its edit form from the stored deployment: name the provider.
        if isinstance(instance, Deployment):
            return DeploymentOut(instance).data
        return super().to_representation(instance)


class LogicalModelOut(serializers.ModelSerializer):
    deployments = DeploymentOut(many=True, read_only=True)
    # Numbers in JSON, as documents and exports carry them (never strings), and never negative.
    input_price_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=False, min_value=0)
    output_price_per_mtok = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=False, min_value=0)

    class Meta:
        model = LogicalModel
        fields = [
            "name",
            "description",
            "deployments",
            "fallbacks",
            "context_window",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "can_embed",
            "drop_unsupported_params",
            "enabled",
            "created_at",
            "updated_at",
        ]


class LogicalModelIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=300, allow_blank=True, required=False, default="")
    deployments = DeploymentIn(many=True, required=False, help_text="replaces the model's deployments when given")
    fallbacks = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    context_window = serializers.IntegerField(min_value=1, required=False, default=8192)
    # A JSON number (a numeric string is taken too), typed so in the OpenAPI document.
    # default=0 as before (the stubs want a Decimal): a Decimal default would change the validated
    # data and the OpenAPI document.
    input_price_per_mtok = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        required=False,
        default=0,  # type: ignore[arg-type]
        coerce_to_string=False,
    )
    output_price_per_mtok = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        required=False,
        default=0,  # type: ignore[arg-type]
        coerce_to_string=False,
    )
    can_embed = serializers.BooleanField(required=False, default=False)
    drop_unsupported_params = serializers.BooleanField(required=False, default=False)
    enabled = serializers.BooleanField(required=False, default=True)


# --- rate-limit policies -----------------------------------------------------------------


class RateLimitPolicyOut(serializers.ModelSerializer):
    budget_usd = serializers.DecimalField(max_digits=12, decimal_places=4, coerce_to_string=False, allow_null=True)

    class Meta:
        model = RateLimitPolicy
        fields = ["id", "scope", "subject", "rpm", "tpm", "max_concurrent", "budget_usd", "budget_period", "enabled"]


class RateLimitPolicyIn(serializers.Serializer):
    scope = serializers.ChoiceField(choices=RateLimitScope.choices)
    subject = serializers.CharField(max_length=200, allow_blank=True, required=False, default="")
    rpm = serializers.IntegerField(min_value=0, allow_null=True, required=False, default=None)
    tpm = serializers.IntegerField(min_value=0, allow_null=True, required=False, default=None)
    max_concurrent = serializers.IntegerField(min_value=0, allow_null=True, required=False, default=None)
    # No digit limits here: the service refuses 0, too many places or digits in its own words
    # (rounding would store another budget than the one sent).
    budget_usd = serializers.DecimalField(
        max_digits=None,
        decimal_places=None,
        allow_null=True,
        required=False,
        default=None,
        coerce_to_string=False,
        help_text="USD per budget_period, above 0, at most 4 decimal places; null: no budget",
    )
    budget_period = serializers.ChoiceField(
        choices=BudgetPeriod.choices,
        required=False,
        default=BudgetPeriod.MONTH,
        error_messages={"invalid_choice": f"unknown period '{{input}}'; allowed: {', '.join(BudgetPeriod.values)}"},
        help_text="the calendar period (UTC) of budget_usd",
    )
    enabled = serializers.BooleanField(required=False, default=True)


# --- tools -------------------------------------------------------------------------------


class ToolOut(serializers.ModelSerializer):
    id = serializers.CharField(source="tool_id")
    secret_headers = serializers.SerializerMethodField()

    class Meta:
        model = Tool
        # What a caller may set (the services' list), then what only toolcore writes.
        fields = ["id", *TOOL_FIELDS, "secret_headers", "version", "created_at", "updated_at"]

    @extend_schema_field(_SECRET_STATES)
    def get_secret_headers(self, obj: Tool) -> dict[str, Any]:
        names = secret_header_names(obj)
        changed = secret_changed_at(instance=obj, field="secret_headers") if names else None
        return {name: _state(True, changed) for name in names}


class ToolIn(serializers.Serializer):
    id = serializers.CharField(max_length=128, source="tool_id")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    input_schema = serializers.JSONField()
    output_schema = serializers.JSONField(required=False, allow_null=True, default=None)
    executor = serializers.ChoiceField(choices=Executor.choices)
    target = serializers.CharField(max_length=2000)
    allowed_agents = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        required=False,
        default=None,
        help_text="null: every agent; []: none; a list: only those agents",
    )
    timeout = serializers.FloatField(required=False, default=10.0)
    enabled = serializers.BooleanField(required=False, default=True)
    read_only = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]  # a declared field: DRF's metaclass takes it off the class
    destructive = serializers.BooleanField(required=False, default=False)
    idempotent = serializers.BooleanField(required=False, default=False)
    rate_limit_per_minute = serializers.IntegerField(min_value=0, allow_null=True, required=False, default=None)
    secret_headers = serializers.DictField(
        child=serializers.CharField(allow_null=True, allow_blank=True),
        write_only=True,
        required=False,
        help_text="write-only; merged into the stored headers, a null or empty value removes that header",
    )
    agent_secret_headers = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        default=dict,
        help_text="{header: agent secret name}: the calling agent's secret sent as that header (names, not values)",
    )


# --- MCP servers -------------------------------------------------------------------------


class McpServerOut(serializers.ModelSerializer):
    headers = serializers.SerializerMethodField()
    tools = serializers.SerializerMethodField()

    class Meta:
        model = McpServer
        # What a caller may set (the services' list), then what only toolcore and the sync write.
        fields = [
            "name",
            *MCP_SERVER_FIELDS,
            "headers",
            "protocol_version",
            "last_synced_at",
            "last_sync_error",
            "tools",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(_SECRET_STATES)
    def get_headers(self, obj: McpServer) -> dict[str, Any]:
        names = secret_header_names(obj)
        changed = secret_changed_at(instance=obj, field="secret_headers") if names else None
        return {name: _state(True, changed) for name in names}

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_tools(self, obj: McpServer) -> list[str]:
        return sorted(obj.tools.values_list("tool_id", flat=True))


class McpServerIn(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    url = serializers.CharField(max_length=2000)
    transport = serializers.ChoiceField(choices=McpTransport.choices, required=False, default=McpTransport.STREAMABLE_HTTP)
    prefix = serializers.CharField(max_length=48, required=False, help_text="default: the name")
    description = serializers.CharField(allow_blank=True, required=False, default="")
    allowed_agents = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        required=False,
        default=None,
        help_text="null: every agent; []: none; a list: only those agents (its tools start with this list)",
    )
    timeout = serializers.FloatField(required=False, default=30.0)
    enabled = serializers.BooleanField(required=False, default=True)
    headers = serializers.DictField(
        child=serializers.CharField(allow_null=True, allow_blank=True),
        write_only=True,
        required=False,
        help_text="write-only secret headers sent to the upstream; merged, a null or empty value removes one",
    )
    agent_secret_headers = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        default=dict,
        help_text="{header: agent secret name}: the calling agent's secret sent as that header",
    )


# --- agents ------------------------------------------------------------------------------


class AgentOut(serializers.ModelSerializer):
    secrets = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = ["id", *EDITABLE_FIELDS, "secrets", "version", "created_at", "updated_at"]

    @extend_schema_field(_SECRET_STATES)
    def get_secrets(self, obj: Agent) -> dict[str, Any]:
        # Only names and dates: the views prefetch the secrets without their value column.
        return {secret.name: _state(True, secret.updated_at) for secret in sorted(obj.secrets.all(), key=lambda x: x.name)}


class AgentIn(serializers.Serializer):
    id = serializers.CharField(max_length=70)
    name = serializers.CharField(max_length=200)
    microdao_id = serializers.CharField(max_length=100)
    model = serializers.CharField(max_length=100)
    enabled = serializers.BooleanField(required=False, default=True)
    system_prompt = serializers.CharField(allow_blank=True, required=False, default="")
    character = serializers.JSONField(required=False, default=dict)
    memory_recall_limit = serializers.IntegerField(min_value=0, required=False, default=5)
    memory_kinds = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    max_tool_steps = serializers.IntegerField(min_value=0, required=False, default=4)
    tool_mode = serializers.ChoiceField(choices=ToolMode.choices, required=False, default=ToolMode.NATIVE)
    temperature = serializers.FloatField(allow_null=True, required=False, default=None)
    history_turns = serializers.IntegerField(min_value=0, required=False, default=10)
    history_tokens = serializers.IntegerField(min_value=0, required=False, default=4000)
    secrets = serializers.DictField(
        child=serializers.CharField(allow_null=True, allow_blank=True, trim_whitespace=False),
        write_only=True,
        required=False,
        help_text="write-only; {NAME: value} sets, {NAME: null} deletes; others are kept",
    )


class SecretValueIn(serializers.Serializer):
    value = serializers.CharField(write_only=True, trim_whitespace=False, help_text="write-only; never returned")


# --- embedding models --------------------------------------------------------------------


class EmbeddingModelOut(serializers.ModelSerializer):
    class Meta:
        model = EmbeddingModel
        fields = ["name", "backend", "dimensions", "is_active", "options", "created_at", "updated_at"]


class EmbeddingModelIn(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    backend = serializers.ChoiceField(choices=EmbeddingBackend.choices)
    dimensions = serializers.IntegerField()
    options = serializers.JSONField(required=False, default=dict)
    is_active = serializers.BooleanField(required=False, default=False, help_text="true activates this model")


# --- documents ---------------------------------------------------------------------------


class PlanItemOut(serializers.Serializer):
    type = serializers.ChoiceField(choices=["provider", "model", "rate_limit", "tool", "agent"])
    id = serializers.CharField()
    path = serializers.CharField(help_text="where the object sits in the document")
    action = serializers.ChoiceField(choices=["create", "update", "delete", "unchanged"])
    changes = serializers.DictField(child=serializers.ListField(), help_text="field -> [before, after]; secrets as (changed)")


class PlanSummaryOut(serializers.Serializer):
    create = serializers.IntegerField()  # type: ignore[assignment]  # a declared field: DRF's metaclass takes it off the class
    update = serializers.IntegerField()  # type: ignore[assignment]  # a declared field: DRF's metaclass takes it off the class
    delete = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class PlanOut(serializers.Serializer):
    dry_run = serializers.BooleanField()
    applied = serializers.BooleanField()
    summary = PlanSummaryOut()
    changes = PlanItemOut(many=True)


# --- the change log ----------------------------------------------------------------------


class ChangeRecordOut(serializers.ModelSerializer):
    class Meta:
        model = ChangeRecord
        fields = ["id", "created_at", "actor", "source", "object_type", "object_id", "object_repr", "action", "changes"]
