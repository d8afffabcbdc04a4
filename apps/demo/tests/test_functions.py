"""The demo's python tool function `followups.create`, run by toolcore's python executor."""

from __future__ import annotations

import pytest

from apps.demo.models import Followup
from apps.tools.tests.conftest import call

# The function runs in a worker thread with a connection of its own: its row must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_python_tool_writes_a_real_row(make_tool):
    make_tool(
        "followups.create",
        executor="python",
        target="followups.create",
        input_schema={
            "type": "object",
            "properties": {"microdao_id": {"type": "string"}, "title": {"type": "string"}, "due_date": {"type": "string"}},
            "required": ["microdao_id", "title"],
        },
    )
    outcome = call(
        "followups.create", args={"microdao_id": "microdao:7", "title": "Ship v3", "due_date": "2026-12-01"}, request_id="req-f1"
    )
    assert outcome.ok, outcome
    row = Followup.objects.get()
    assert (row.title, row.agent_id, row.microdao_id, str(row.due_date), row.request_id) == (
        "Ship v3",
        "agent:sofia",
        "microdao:7",
        "2026-12-01",
        "req-f1",
    )
    assert outcome.result["id"] == f"followup-{row.pk}"
    bad = call("followups.create", args={"microdao_id": "m", "title": "x", "due_date": "soon"})
    assert bad.error_type == "invalid_args" and "not a date" in bad.error
