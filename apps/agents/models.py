"""Agent blueprints ("characters") and their encrypted secrets."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.agents.choices import RunStatus, RunStrategy, ToolMode
from daarion.infra.crypto import EncryptedTextField

AGENT_ID_RE = r"^agent:[a-z0-9][a-z0-9._-]{0,62}$"
SECRET_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"
MAX_TOOL_STEPS_LIMIT = 16


class Agent(models.Model):
    """One agent: who it is (character), what it thinks with (model), how it remembers."""

    id = models.CharField(
        primary_key=True,
        max_length=70,
        validators=[RegexValidator(AGENT_ID_RE, "agent ids look like 'agent:sofia' (lowercase, digits, . _ -)")],
    )
    name = models.CharField(max_length=200)
    microdao_id = models.CharField(max_length=100, help_text="The microDAO this agent belongs to, e.g. microdao:7")
    enabled = models.BooleanField(default=True)
    model = models.CharField(max_length=100, help_text="Logical model name routed by the LLM proxy")
    system_prompt = models.TextField(blank=True)
    character = models.JSONField(
        default=dict,
        blank=True,
        help_text="elizaOS-shaped character: bio, lore, style, topics, adjectives, messageExamples ...",
    )
    memory_recall_limit = models.PositiveSmallIntegerField(
        default=5, validators=[MaxValueValidator(50)], help_text="Memories recalled per turn; 0 turns recall off"
    )
    memory_kinds = models.JSONField(default=list, blank=True, help_text="Memory kinds to recall (empty: every kind)")
    max_tool_steps = models.PositiveSmallIntegerField(
        default=4,
        validators=[MaxValueValidator(MAX_TOOL_STEPS_LIMIT)],
        help_text="Model calls that may end in tool calls before the agent must answer",
    )
    tool_mode = models.CharField(max_length=16, choices=ToolMode.choices, default=ToolMode.NATIVE)
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
        help_text="Sampling temperature; empty: the model's default",
    )
    history_turns = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="Earlier turns of the session put into the prompt, newest kept first; 0 turns history off",
    )
    history_tokens = models.PositiveIntegerField(
        default=4000,
        validators=[MaxValueValidator(200_000)],
        help_text="Token budget (estimated) for those earlier turns; what does not fit is left to memory recall",
    )
    # Changes on every edit (agent or secrets), so runtimes can tell which blueprint they hold.
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_tool_steps__lte=MAX_TOOL_STEPS_LIMIT), name="agent_max_tool_steps_bounded"
            ),
            models.CheckConstraint(condition=~models.Q(model=""), name="agent_model_not_empty"),
            models.CheckConstraint(
                condition=models.Q(temperature__isnull=True) | models.Q(temperature__gte=0, temperature__lte=2),
                name="agent_temperature_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class AgentSecret(models.Model):
    """A named secret of an agent (an API key for its provider, a token for a tool)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(
        max_length=100,
        validators=[RegexValidator(SECRET_NAME_RE, "secret names are letters, digits, _ . - (e.g. OPENAI_API_KEY)")],
    )
    value = EncryptedTextField()
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["agent_id", "name"]
        constraints = [models.UniqueConstraint(fields=["agent", "name"], name="agent_secret_unique_name")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.name}"


class Run(models.Model):
    """One agent turn as a durable run: queued by a web process, executed by a worker on the
    `agents` queue, its UI message chunks streamed through Redis (see apps/agents/runs/)."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    # Not a foreign key: a run is a record of what happened and outlives its agent.
    agent_id = models.CharField(max_length=70, db_index=True)
    session_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    strategy = models.CharField(max_length=16, choices=RunStrategy.choices, default=RunStrategy.REJECT)
    # The turn's input (message, microdao_id, channel_id, user_id, context): what the executor runs.
    request = models.JSONField(default=dict)
    # The final assistant message as the AI SDK builds it (UIMessage: id, role, parts, metadata).
    message = models.JSONField(null=True, blank=True)
    # The JSON answer of POST /chat (reply, tool_calls, steps, memory ids).
    result = models.JSONField(null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    step_count = models.PositiveSmallIntegerField(default=0)
    # {type, message, status, details} when the run failed, was cancelled or interrupted.
    error = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    # The service token that started it (id only), so a run can be traced back to a caller.
    token_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Which worker ran it (hostname:pid), for operators reading an interrupted run.
    executor = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent_id", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["session_id", "created_at"], name="run_session_created"),
            models.Index(fields=["status", "created_at"], name="run_status_created"),
            models.Index(fields=["agent_id", "created_at"], name="run_agent_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.agent_id}, {self.status})"

    @property
    def ended(self) -> bool:
        return self.status not in RunStatus.active()
