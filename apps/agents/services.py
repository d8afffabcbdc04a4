"""Writes of the agent registry: agents, their secrets, character imports.

Every write validates, saves inside a transaction, raises the agent's `version` and bumps
the `agents` live-config version, so every web process picks up the new blueprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.agents.character import agent_id_for_name, character_errors, stored_character
from apps.agents.models import AGENT_ID_RE, SECRET_NAME_RE, Agent, AgentSecret
from apps.llm.services import rate_limit_policies_forget_agent
from apps.tools.services import tools_forget_agent
from daarion.infra.errors import Conflict, NotFound, ValidationFailed, validate_model
from daarion.infra.live_config import bump_version
from daarion.infra.model_update import model_update
from daarion.infra.redis_client import get_redis, key
from apps.access.services import service_tokens_forget_agent
from daarion.infra.storable import json_problem

AGENTS_CONFIG = "agents"
# Redis hash (under the deployment prefix) of each agent's runtime state; see runtime.py.
RUNTIME_STATE_KEY = ("agents", "runtime-state")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")

# Fields a caller may set; everything else (version, timestamps) is ours.
EDITABLE_FIELDS = (
    "name",
    "microdao_id",
    "enabled",
    "model",
    "system_prompt",
    "character",
    "memory_recall_limit",
    "memory_kinds",
    "max_tool_steps",
    "tool_mode",
    "temperature",
    "history_turns",
    "history_tokens",
)


def agent_validate(agent: Agent) -> None:
    """Every rule an agent must meet; raises ValidationFailed with one detail per problem."""
    details: list[dict[str, str]] = []
    if not isinstance(agent.character, dict):
        details.append({"path": "character", "message": "must be a JSON object"})
    elif (found := json_problem(agent.character, "character")) is not None:
        # jsonb refuses NUL and lone surrogates: a 422 here, not a 500 from the INSERT.
        details.append({"path": found[0], "message": found[1]})
    elif agent.character:
        # The stored character need not repeat the name (the agent has one), so check it as
        # if it had the agent's name.
        details += character_errors({"name": agent.name or "-", **agent.character})
    kinds = agent.memory_kinds
    if not isinstance(kinds, list) or not all(isinstance(k, str) and _KIND_RE.match(k) for k in kinds):
        details.append({"path": "memory_kinds", "message": "must be a list of memory kinds like 'conversation'"})
    if details:
        raise ValidationFailed("; ".join(f"{d['path']}: {d['message']}" for d in details), details=details)
    validate_model(agent, validate_unique=False)


def _touch(agent_id: str) -> None:
    Agent.objects.filter(pk=agent_id).update(version=F("version") + 1, updated_at=timezone.now())
    bump_version(AGENTS_CONFIG)


@transaction.atomic
def agent_create(
    *,
    agent_id: str,
    name: str,
    microdao_id: str,
    model: str,
    system_prompt: str = "",
    character: dict[str, Any] | None = None,
    enabled: bool = True,
    memory_recall_limit: int = 5,
    memory_kinds: list[str] | None = None,
    max_tool_steps: int = 4,
    tool_mode: str = "native",
    temperature: float | None = None,
    history_turns: int = 10,
    history_tokens: int = 4000,
) -> Agent:
    agent = Agent(
        history_turns=history_turns,
        history_tokens=history_tokens,
        tool_mode=tool_mode,
        temperature=temperature,
        id=agent_id,
        name=name,
        microdao_id=microdao_id,
        model=model,
        system_prompt=system_prompt,
        character=character if character is not None else {},
        enabled=enabled,
        memory_recall_limit=memory_recall_limit,
        memory_kinds=memory_kinds if memory_kinds is not None else [],
        max_tool_steps=max_tool_steps,
    )
    agent_validate(agent)
    if Agent.objects.filter(pk=agent_id).exists():
        raise Conflict(f"agent {agent_id!r} already exists", type="agent_exists", details={"agent_id": agent_id})
    agent.save(force_insert=True)
    bump_version(AGENTS_CONFIG)
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, **changes: Any) -> Agent:
    """Applies `changes` (any of EDITABLE_FIELDS) and raises the version when something changed."""
    locked = Agent.objects.select_for_update().filter(pk=agent.pk).first()
    if locked is None:
        raise NotFound(f"agent {agent.pk!r} does not exist", type="agent_not_found")
    # The version says "the blueprint changed" to runtimes, so it moves only with a real change.
    if model_update(instance=locked, fields=EDITABLE_FIELDS, data=changes, validate=agent_validate, stamp=_next_version):
        bump_version(AGENTS_CONFIG)
    return locked


def _next_version(agent: Agent) -> None:
    agent.version += 1  # the row is locked: no other writer counts at the same time
    agent.updated_at = timezone.now()


@transaction.atomic
def agent_delete(*, agent: Agent) -> list[str]:
    """Deletes the agent and everything that names it, in the same transaction, so nothing
    in the registry is left naming an agent that is gone: its id leaves every tool's
    allowed_agents and every service token's agents (an emptied list stays [], no agent),
    and its agent-scope rate-limit policies are deleted. Each of those is changed, versioned
    and logged like any edit of its kind. Returns the ids of the tools it narrowed."""
    agent_id = agent.pk
    forgotten = tools_forget_agent(agent_id=agent_id)
    rate_limit_policies_forget_agent(agent_id=agent_id)
    service_tokens_forget_agent(agent_id=agent_id)
    agent.delete()
    bump_version(AGENTS_CONFIG)
    # A new agent under the same id must start unloaded, not inherit this one's state.
    transaction.on_commit(lambda: get_redis().hdel(key(*RUNTIME_STATE_KEY), agent_id))
    return [tool.tool_id for tool in forgotten]


def _check_secret_name(name: str) -> None:
    # Before the name reaches a query: PostgreSQL refuses a NUL in it with a 500.
    if not isinstance(name, str) or not re.fullmatch(SECRET_NAME_RE, name):
        raise ValidationFailed(
            f"secret {name!r}: secret names are letters, digits, _ . - (e.g. OPENAI_API_KEY)",
            details=[
                {"path": f"secrets.{name}.name", "message": "secret names are letters, digits, _ . - (e.g. OPENAI_API_KEY)"}
            ],
        )


@transaction.atomic
def agent_secret_set(*, agent: Agent, name: str, value: str) -> AgentSecret:
    """Creates or replaces the secret `name`; the value is sealed with AES-256-GCM on save."""
    _check_secret_name(name)
    if not isinstance(value, str) or not value:
        raise ValidationFailed(
            f"secret {name!r}: the value must be a non-empty string",
            details=[{"path": f"secrets.{name}", "message": "must be a non-empty string"}],
        )
    secret = AgentSecret.objects.filter(agent=agent, name=name).first() or AgentSecret(agent=agent, name=name)
    secret.value = value
    secret.updated_at = timezone.now()
    validate_model(secret, prefix=f"secrets.{name}", exclude=["agent"], validate_unique=False)
    secret.save()
    _touch(agent.pk)
    return secret


@transaction.atomic
def agent_secret_delete(*, agent: Agent, name: str) -> bool:
    if not isinstance(name, str) or not re.fullmatch(SECRET_NAME_RE, name):
        return False  # no stored secret has such a name (and a NUL in it would fail the query)
    deleted, _ = AgentSecret.objects.filter(agent=agent, name=name).delete()
    if deleted:
        _touch(agent.pk)
    return bool(deleted)


# --- character import ------------------------------------------------------------------


@dataclass
class CharacterImport:
    agent_id: str
    created: bool
    changed: bool
    secrets: list[str] = field(default_factory=list)


def _character_agent_id(document: dict[str, Any]) -> str:
    for field_name in ("agent_id", "id"):
        value = document.get(field_name)
        # elizaOS ids are often UUIDs; only an id in our own form names the agent.
        if isinstance(value, str) and re.match(AGENT_ID_RE, value):
            return value
    return agent_id_for_name(document["name"])


@transaction.atomic
def agent_import_character(
    *,
    document: Any,
    microdao_id: str | None = None,
    model: str | None = None,
) -> CharacterImport:
    """Creates or updates the agent a character document describes, with its secrets.

    `microdao_id` / `model` are defaults for documents whose `settings` do not name them.
    Raises ValidationFailed (details with paths) for a document that does not fit.
    """
    errors = character_errors(document, prefix="")
    if errors:
        for item in errors:
            item["path"] = item["path"].lstrip(".") or "(document)"
        raise ValidationFailed("; ".join(f"{d['path']}: {d['message']}" for d in errors[:5]), details=errors)
    settings = document.get("settings") or {}
    memory = settings.get("memory") or {}
    agent_id = _character_agent_id(document)
    fields: dict[str, Any] = {
        "name": document["name"],
        "microdao_id": settings.get("microdao_id") or microdao_id,
        "model": settings.get("model") or model,
        "system_prompt": document.get("system", ""),
        "character": stored_character(document),
    }
    # Whether an agent runs is an operator's call: a re-import only changes it when the file says so.
    if "enabled" in settings:
        fields["enabled"] = settings["enabled"]
    if "recall_limit" in memory:
        fields["memory_recall_limit"] = memory["recall_limit"]
    if "kinds" in memory:
        fields["memory_kinds"] = memory["kinds"]
    for name in ("max_tool_steps", "tool_mode", "temperature", "history_turns", "history_tokens"):
        if name in settings:
            fields[name] = settings[name]
    existing = Agent.objects.filter(pk=agent_id).first()
    missing = [name for name in ("microdao_id", "model") if not fields[name]]
    if existing is not None:
        for name in missing:
            fields.pop(name)
    elif missing:
        raise ValidationFailed(
            f"{' and '.join(missing)} not given: set settings.{missing[0]} in the file or pass a default",
            details=[{"path": f"settings.{name}", "message": "required for a new agent"} for name in missing],
        )
    if existing is None:
        agent = agent_create(agent_id=agent_id, **fields)
        changed = True
    else:
        version = existing.version
        agent = agent_update(agent=existing, **fields)
        changed = agent.version != version
    secrets = settings.get("secrets") or {}
    current = {s.name: s.value for s in agent.secrets.all()}
    for name, value in secrets.items():
        if current.get(name) != value:
            agent_secret_set(agent=agent, name=name, value=value)
            changed = True
    return CharacterImport(agent_id=agent_id, created=existing is None, changed=changed, secrets=sorted(secrets))
