"""The agent-secrets hook: one resolver per process, asked only for the names wanted, and no
secrets at all without one (toolcore used without the agents app)."""

from __future__ import annotations

import asyncio

import pytest

from daarion.infra import agent_secrets


def test_apps_agents_registers_the_one_resolver():
    registered = agent_secrets.resolver.function
    assert registered is not None  # apps.agents registered it at start-up
    agent_secrets.register_agent_secrets_resolver(registered)  # the same one again: a no-op
    with pytest.raises(RuntimeError, match="registered already"):
        agent_secrets.register_agent_secrets_resolver(lambda agent_id, names: None)  # type: ignore[arg-type, return-value]


def test_without_a_resolver_no_agent_has_secrets(monkeypatch):
    monkeypatch.setattr(agent_secrets.resolver, "function", None)
    assert asyncio.run(agent_secrets.agent_secrets_for("agent:sofia", ["VENDOR_TOKEN"])) == {}


def test_the_resolver_is_asked_for_each_name_once_and_only_those_come_back(monkeypatch):
    asked: list[tuple[str, tuple[str, ...]]] = []

    async def resolver(agent_id: str, names: tuple[str, ...]) -> dict[str, str]:
        asked.append((agent_id, names))
        return {"A": "a-value", "B": "b-value", "NOT_ASKED": "x"}

    monkeypatch.setattr(agent_secrets.resolver, "function", resolver)
    found = asyncio.run(agent_secrets.agent_secrets_for("agent:sofia", ["A", "MISSING", "A"]))
    assert found == {"A": "a-value"}
    assert asked == [("agent:sofia", ("A", "MISSING"))]
    assert asyncio.run(agent_secrets.agent_secrets_for("agent:sofia", [])) == {}
    assert len(asked) == 1  # no names: the resolver is not asked
