"""tools.W001 (apps/tools/checks.py): tools whose allowed_agents name agents that do not exist,
found by `manage.py check --database default` in rows written past the services."""

from __future__ import annotations

import io

import pytest
from django.core.checks import Tags, run_checks
from django.core.checks.messages import WARNING
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from apps.tools.models import Tool


def _tool_warnings(databases: list[str] | None = ["default"]) -> list:  # noqa: B006 - read only
    return [m for m in run_checks(databases=databases, tags=[Tags.database]) if m.id == "tools.W001"]


@pytest.fixture
def clean_tools(make_tool):
    make_tool("team.tool", allowed_agents=["agent:pm", "agent:sofia"])
    make_tool("open.tool")  # null: every agent, names nobody
    make_tool("closed.tool", allowed_agents=[])


def test_a_clean_registry_has_no_warning(clean_tools):
    assert _tool_warnings() == []
    out, err = io.StringIO(), io.StringIO()
    call_command("check", "--database", "default", "--fail-level", "WARNING", stdout=out, stderr=err)
    assert "tools.W001" not in out.getvalue() + err.getvalue()


def test_tools_naming_missing_agents_are_reported_one_warning_each(clean_tools):
    # Written past the services, as rows from before the rule were.
    Tool.objects.filter(tool_id="team.tool").update(allowed_agents=["agent:gone", "agent:pm", "agent:typo", "agent:gone"])
    Tool.objects.bulk_create(
        [
            Tool(
                tool_id="old.tool",
                name="old",
                executor="http",
                target="http://127.0.0.1:9/echo",
                input_schema={"type": "object"},
                allowed_agents=["agent:retired"],
            ),
        ]
    )

    warnings = sorted(_tool_warnings(), key=lambda m: m.msg)
    assert [(m.level, m.msg) for m in warnings] == [
        (WARNING, "tool 'old.tool' allows agents that do not exist: 'agent:retired'"),
        (WARNING, "tool 'team.tool' allows agents that do not exist: 'agent:gone', 'agent:typo'"),
    ]
    assert all(m.obj is Tool for m in warnings)
    assert "PATCH /api/registry/tools/team.tool/" in warnings[1].hint and "create those agents" in warnings[1].hint

    # What an operator runs: the warnings and their hints on stderr, the command still succeeds...
    err = io.StringIO()
    call_command("check", "--database", "default", stdout=io.StringIO(), stderr=err)
    text = err.getvalue()
    assert "(tools.W001) tool 'team.tool' allows agents that do not exist: 'agent:gone', 'agent:typo'" in text
    assert "(tools.W001) tool 'old.tool' allows agents that do not exist: 'agent:retired'" in text
    assert "HINT: Take those ids out of the allowed agents of 'team.tool'" in text
    # ...unless asked to fail on warnings (a deploy gate).
    with pytest.raises(SystemCheckError, match="tools.W001"):
        call_command("check", "--database", "default", "--fail-level", "WARNING", stdout=io.StringIO(), stderr=io.StringIO())

    # Fixed the supported way, the warning goes.
    Tool.objects.filter(tool_id__in=["team.tool", "old.tool"]).update(allowed_agents=["agent:pm"])
    assert _tool_warnings() == []


def test_without_a_database_the_check_does_not_run_or_query(clean_tools, django_assert_num_queries):
    Tool.objects.filter(tool_id="team.tool").update(allowed_agents=["agent:gone"])
    # Plain `manage.py check` and every command's start-up pass no databases: no query, no warning.
    with django_assert_num_queries(0):
        assert _tool_warnings(databases=None) == []
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "tools.W001" not in out.getvalue() + err.getvalue()
    assert len(_tool_warnings()) == 1
