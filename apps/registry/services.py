"""Writes that span several rows of one registry object, composed only of the owning apps'
services (so their rules, version bumps and change-log records all hold): an agent's secrets.
(A logical model's deployments have their one writer in apps/llm/services.py.)"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from apps.agents.models import Agent
from apps.agents.services import agent_secret_delete, agent_secret_set


@transaction.atomic
def agent_secrets_apply(*, agent: Agent, secrets: Mapping[str, str | None]) -> bool:
    """Sets each named secret (`None` deletes it); secrets not named are kept."""
    changed = False
    for name, value in secrets.items():
        if value is None:
            changed = agent_secret_delete(agent=agent, name=name) or changed
        else:
            agent_secret_set(agent=agent, name=name, value=value)
            changed = True
    return changed
