"""Demo agent for `manage.py seed_demo`: Sofia-Prime (agent:sofia) on the offline stub model,
allowed the demo tools, so `make run` shows memory -> LLM -> tool -> LLM -> memory with no key.

It is imported from characters/sofia-prime.json through the same service as
`import_characters`; with a real provider configured, point its model at it in admin.
"""

from __future__ import annotations

import json
from pathlib import Path

from apps.agents.services import agent_import_character

CHARACTER_FILE = Path(__file__).resolve().parent / "characters" / "sofia-prime.json"


def seed() -> list[str]:
    result = agent_import_character(document=json.loads(CHARACTER_FILE.read_text(encoding="utf-8")))
    state = "created" if result.created else "updated" if result.changed else "unchanged"
    return [
        f"agents: {result.agent_id} (Sofia-Prime) {state}, model dagi-stub",
        "agents: try `manage.py agent_chat agent:sofia` or POST /internal/agents/agent:sofia/chat "
        '{"message": "Which projects do we have?"}',
    ]
