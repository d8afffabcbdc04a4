"""Service tokens: how other services authenticate to /internal and /v1."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ServiceToken(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # First characters of the token, shown in admin and logs so a leaked token can be found.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    # sha256 of the whole token; tokens are 32 random bytes, so a slow hash buys nothing.
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: llm, memory, tools, agents, ...")
    agents = models.JSONField(
        null=True,
        blank=True,
        help_text="Agent ids this token may act for; empty (null) means any agent.",
    )
    enabled = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # The change log leaves these out: a hash of a credential, and a use timestamp.
    audit_exclude = ("secret_hash", "last_used_at")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ChangeRecord(models.Model):
    """One change to a registry object, through any door (admin, API, import, CLI)."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"

    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    actor = models.CharField(max_length=200, help_text="Who: a staff user, a service token, or a command")
    source = models.CharField(max_length=20, help_text="Through which door: admin, api, import, cli, system")
    object_type = models.CharField(max_length=100, help_text="app_label.Model")
    object_id = models.CharField(max_length=200)
    object_repr = models.CharField(max_length=300, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    # {field: [before, after]}; secrets appear only as "(changed)", never their values.
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "-created_at"], name="changerecord_object_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id} by {self.actor}"
