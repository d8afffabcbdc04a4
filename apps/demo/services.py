"""Writes of the demo: the follow-ups of the demo tool `followups.create`."""

from __future__ import annotations

from typing import Any

from apps.demo.models import Followup
from daarion.infra.errors import validate_model


def followup_create(
    *, agent_id: str, microdao_id: str, title: str, assignee: str = "", due_date: Any = None, request_id: str = ""
) -> Followup:
    followup = Followup(
        agent_id=agent_id,
        microdao_id=microdao_id,
        title=title,
        assignee=assignee,
        due_date=due_date,
        request_id=request_id,
    )
    validate_model(followup)
    followup.save()
    return followup
