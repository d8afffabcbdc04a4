"""Models of the demo: the follow-ups written by the demo tool `followups.create`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Followup(models.Model):
    """A follow-up task, written by the demo tool `followups.create`."""

    agent_id = models.CharField(max_length=200)
    microdao_id = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    assignee = models.CharField(max_length=200, blank=True, default="")
    due_date = models.DateField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        # The table toolcore created when the model lived there (apps/tools migration 0001);
        # the move changed only Django's state, so existing rows stay where they are.
        db_table = "tools_followup"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title
