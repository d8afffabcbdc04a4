"""Models of the LLM proxy: the registry (providers, logical models, deployments,
rate-limit policies) and one usage record per call."""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.llm.choices import BudgetPeriod, Endpoint, ProviderKind, RateLimitScope, UsageStatus
from daarion.infra.crypto import EncryptedTextField

# Names appear in URLs, YAML keys and Redis keys: keep them boring.
name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
    "use letters, digits and . _ : - (starting with a letter or digit), at most 100 characters",
)


class Provider(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.CharField(max_length=500, blank=True, help_text="e.g. https://api.openai.com/v1")
    api_key = EncryptedTextField(blank=True, default="", help_text="Stored encrypted; never shown again.")
    api_key_env = models.CharField(
        max_length=128, blank=True, help_text="Name of an environment variable holding the key (used when no key is stored)."
    )
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.1)])
    max_retries = models.PositiveSmallIntegerField(default=2, help_text="Retries on the same deployment before moving on.")
    extra_headers = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(timeout_seconds__gt=0), name="llm_provider_timeout_positive"),
            models.CheckConstraint(condition=models.Q(max_retries__lte=10), name="llm_provider_max_retries_bounded"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class LogicalModel(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    description = models.CharField(max_length=300, blank=True)
    # Ordered names of other logical models tried when every deployment of this one failed.
    fallbacks = models.JSONField(default=list, blank=True)
    context_window = models.PositiveIntegerField(default=8192)
    input_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    output_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    can_embed = models.BooleanField(default=False)
    drop_unsupported_params = models.BooleanField(
        default=False,
        help_text="An OpenAI parameter the serving provider cannot take (e.g. seed on Anthropic) is left out "
        "and named in x-daarion-dropped-params, instead of a 400 naming it.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(input_price_per_mtok__gte=0, output_price_per_mtok__gte=0),
                name="llm_model_prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    logical_model = models.ForeignKey(LogicalModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(max_length=200, help_text="The model name the provider knows.")
    weight = models.PositiveIntegerField(default=1, help_text="Relative share of traffic; 0 takes none.")
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests/min cap of this deployment.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens/min cap of this deployment.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["logical_model__name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["logical_model", "provider", "upstream_model"], name="llm_deployment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.logical_model_id}→{self.provider_id}/{self.upstream_model}"


class RateLimitPolicy(models.Model):
    scope = models.CharField(max_length=16, choices=RateLimitScope.choices)
    subject = models.CharField(max_length=200, blank=True, help_text="The agent or microDAO id; empty for the default policy.")
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty: unlimited.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty: unlimited.")
    max_concurrent = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight; empty: unlimited.")
    budget_usd = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Spend allowed per budget period in USD, at the models' prices; empty: no budget.",
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["scope", "subject"]
        verbose_name_plural = "rate-limit policies"
        constraints = [
            models.UniqueConstraint(fields=["scope", "subject"], name="llm_ratelimit_unique_subject"),
            models.CheckConstraint(
                condition=(
                    models.Q(scope=RateLimitScope.DEFAULT, subject="")
                    | (~models.Q(scope=RateLimitScope.DEFAULT) & ~models.Q(subject=""))
                ),
                name="llm_ratelimit_subject_matches_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.subject}" if self.subject else self.scope


class UsageRecord(models.Model):
    # Made by the proxy before the row exists, so a batch written twice inserts once.
    record_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    agent_id = models.CharField(max_length=200, blank=True)
    microdao_id = models.CharField(max_length=200, blank=True)
    channel_id = models.CharField(max_length=200, blank=True)
    endpoint = models.CharField(max_length=16, choices=Endpoint.choices, default=Endpoint.PROXY)
    logical_model = models.CharField(max_length=100)
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=UsageStatus.choices)
    error_type = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to first token (streams).")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    stream = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=1)
    # The service token of the request that made the call (daarion.ServiceToken's id, kept as
    # a number so the history stays when a token is deleted); empty for calls a worker made
    # on its own (agent runs, embeddings, summaries).
    token_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["token_id", "created_at"], name="llm_usage_token_time"),
            models.Index(fields=["agent_id", "created_at"], name="llm_usage_agent_time"),
            models.Index(fields=["microdao_id", "created_at"], name="llm_usage_microdao_time"),
            models.Index(fields=["logical_model", "created_at"], name="llm_usage_model_time"),
            models.Index(fields=["created_at"], name="llm_usage_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id or self.record_id} {self.logical_model} {self.status}"
