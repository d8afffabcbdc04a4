"""The in-process interface the agents app uses: tools_for_agent, openai_tools_for_agent."""

from __future__ import annotations

import pytest

from apps.tools.selectors import openai_tools_for_agent, tool_id_for_function, tools_for_agent
from apps.tools.services import tool_update

pytestmark = pytest.mark.django_db(transaction=True)


def test_tools_for_agent_honours_allowed_agents_and_enabled(make_tool):
    make_tool("a.every", allowed_agents=None)
    make_tool("a.pm", allowed_agents=["agent:pm"])
    make_tool("a.none", allowed_agents=[])
    off = make_tool("a.off")
    tool_update(tool=off, enabled=False)
    assert [t.id for t in tools_for_agent("agent:pm")] == ["a.every", "a.pm"]
    assert [t.id for t in tools_for_agent("agent:sofia")] == ["a.every"]


def test_openai_tools_and_reverse_mapping(make_tool):
    make_tool("projects.list", description="Lists projects")
    make_tool("projects__list")
    specs, mapping = openai_tools_for_agent("agent:sofia")
    assert {s["function"]["name"] for s in specs} == set(mapping)
    by_id = {v: k for k, v in mapping.items()}
    assert by_id["projects.list"] == "projects__list_" + by_id["projects.list"].rsplit("_", 1)[1]
    assert tool_id_for_function(by_id["projects.list"]) == "projects.list"
    assert tool_id_for_function(by_id["projects__list"]) == "projects__list"
    assert tool_id_for_function("nope") is None
    spec = next(s for s in specs if mapping[s["function"]["name"]] == "projects.list")
    assert spec["function"]["description"] == "Lists projects"
