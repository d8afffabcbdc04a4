"""Demo agents for `manage.py seed_demo`, on the offline stub model: Sofia-Prime (agent:sofia),
who shows memory -> LLM -> tool -> LLM -> memory with no key, and the microDAO's project
manager (agent:pm) and CTO (agent:cto). They are the agents the demo tools allow (a tool may
name only real agents), so seed_demo seeds them before the tools.

Each is imported from characters/*.json through the same service as `import_characters`;
with a real provider configured, point an agent's model at it in admin.
"""

from __future__ import annotations

import json
from pathlib import Path

from apps.agents.services import agent_import_character

CHARACTERS = Path(__file__).resolve().parent / "characters"  # apps/demo/characters
CHARACTER_FILES = [CHARACTERS / name for name in ("sofia-prime.json", "pm.json", "cto.json")]


def seed() -> list[str]:
    lines = []
    for path in CHARACTER_FILES:
        document = json.loads(path.read_text(encoding="utf-8"))
        result = agent_import_character(document=document)
        state = "created" if result.created else "updated" if result.changed else "unchanged"
        lines.append(f"agents: {result.agent_id} ({document['name']}) {state}, model {document['settings']['model']}")
    lines.append(
        "agents: try `manage.py agent_chat agent:sofia` or POST /internal/agents/agent:sofia/chat "
        '{"message": "Which projects do we have?"}'
    )
    return lines
