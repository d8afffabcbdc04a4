"""Django admin of the demo: the follow-ups written by the demo tool, listed."""

from __future__ import annotations

from django.contrib import admin

from apps.demo.models import Followup


@admin.register(Followup)
class FollowupAdmin(admin.ModelAdmin):
    list_display = ["title", "microdao_id", "agent_id", "assignee", "due_date", "created_at"]
    search_fields = ["title", "microdao_id", "agent_id"]
