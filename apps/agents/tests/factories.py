"""Rows for agent tests."""

from __future__ import annotations

from typing import Any

from apps.agents.models import Agent
from apps.agents.services import agent_create

SOFIA_CHARACTER: dict[str, Any] = {
    "bio": ["Sofia-Prime keeps the microDAO's projects on track."],
    "lore": ["Was the first agent of microDAO 7."],
    "topics": ["projects", "roadmaps"],
    "adjectives": ["precise", "warm"],
    "style": {"all": ["short answers"], "chat": ["friendly"]},
    "messageExamples": [
        [
            {"user": "{{user1}}", "content": {"text": "What are we working on?"}},
            {"user": "Sofia-Prime", "content": {"text": "Let me list the projects."}},
        ]
    ],
}


def make_agent(agent_id: str = "agent:sofia", **overrides: Any) -> Agent:
    values: dict[str, Any] = {
        "name": "Sofia-Prime",
        "microdao_id": "microdao:7",
        "model": "test-model",
        "system_prompt": "You are Sofia-Prime.",
        "character": SOFIA_CHARACTER,
    }
    values.update(overrides)
    return agent_create(agent_id=agent_id, **values)
