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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
