"""Demo tools for `manage.py seed_demo`: projects.list (HTTP) and followups.create (python)."""

from __future__ import annotations

from django.conf import settings

from apps.tools.models import Tool
from apps.tools.services import tool_create, tool_update

# As the seed's config.yaml allows them; apps.demo.agents seeds these blueprints first.
DEMO_AGENTS = ["agent:sofia", "agent:pm", "agent:cto"]


def demo_tools(public_url: str | None = None) -> list[dict]:
    base = (public_url or settings.DAARION_PUBLIC_URL).rstrip("/")
    return [
        {
            "tool_id": "projects.list",
            "name": "List projects",
            "description": "Повертає список проєктів microDAO. Lists the projects of a microDAO.",
            "input_schema": {
                "type": "object",
                "properties": {"microdao_id": {"type": "string", "description": "e.g. microdao:7"}},
                "required": ["microdao_id"],
                "additionalProperties": False,
            },
            "output_schema": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string"}},
                    "required": ["id", "name"],
                },
            },
            "executor": "http",
            "target": f"{base}/demo/projects.list",
            "allowed_agents": DEMO_AGENTS,
            "timeout": 5.0,
            "read_only": True,
            "idempotent": True,
        },
        {
            "tool_id": "followups.create",
            "name": "Create a follow-up",
            "description": "Creates a follow-up task in a microDAO (who does what, by when).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "microdao_id": {"type": "string"},
                    "title": {"type": "string", "minLength": 1, "maxLength": 300},
                    "assignee": {"type": "string"},
                    "due_date": {"type": "string", "format": "date"},
                },
                "required": ["microdao_id", "title"],
                "additionalProperties": False,
            },
            "output_schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "string"},
                },
                "required": ["id", "title", "status"],
            },
            "executor": "python",
            "target": "followups.create",
            "allowed_agents": DEMO_AGENTS,
            "timeout": 5.0,
            "rate_limit_per_minute": 30,
        },
    ]


def seed(*, public_url: str | None = None) -> list[str]:
    """Creates or refreshes the demo tools. An existing HTTP tool keeps its target unless
    `public_url` is given: a seed run from a shell that does not know where the server
    listens must not repoint a working tool (to the default port)."""
    lines = []
    for spec in demo_tools(public_url):
        spec = dict(spec)
        tool_id = spec.pop("tool_id")
        existing = Tool.objects.filter(tool_id=tool_id).first()
        if existing is None:
            tool_create(tool_id=tool_id, **spec)
            lines.append(f"tool {tool_id} created")
        else:
            if spec["executor"] == "http" and public_url is None:
                spec.pop("target")
            before = existing.version
            tool_update(tool=existing, **spec)
            lines.append(f"tool {tool_id} {'updated' if existing.version != before else 'unchanged'}")
    return lines
