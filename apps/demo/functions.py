"""Python tool functions of the demo (each a `@tool_function` registration), the targets of the
demo's python tools (apps/demo/tools.py). Imported by DemoConfig.ready()."""

from __future__ import annotations

from datetime import date
from typing import Any

from apps.demo.services import followup_create
from apps.tools.executors import ToolContext
from apps.tools.executors.python import ToolFunctionError, tool_function


@tool_function("followups.create")
def create_followup(args: dict, context: ToolContext) -> dict[str, Any]:
    """Writes a Followup row for the calling agent; arguments were checked by input_schema."""
    due = args.get("due_date")
    try:
        due_date = date.fromisoformat(due) if due else None
    except ValueError as exc:
        raise ToolFunctionError(f"due_date {due!r} is not a date (YYYY-MM-DD)", error_type="invalid_args") from exc
    followup = followup_create(
        agent_id=context.agent_id,
        microdao_id=args.get("microdao_id") or context.microdao_id,
        title=args["title"],
        assignee=args.get("assignee", ""),
        due_date=due_date,
        request_id=context.request_id,
    )
    return {
        "id": f"followup-{followup.pk}",
        "title": followup.title,
        "microdao_id": followup.microdao_id,
        "assignee": followup.assignee or None,
        "due_date": followup.due_date.isoformat() if followup.due_date else None,
        "status": "open",
    }
