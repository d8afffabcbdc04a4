"""The demo tools from seed_demo: projects.list against our own demo service, followups.create."""

from __future__ import annotations

from apps.demo.models import Followup
from apps.demo.tools import DEMO_AGENTS, seed
from apps.tools.models import Tool
from apps.tools.tests.conftest import wait_until_served


def test_seed_is_idempotent_and_the_demo_tools_work_end_to_end(
    tools_server, tools_api, settings, make_token, bearer, make_agents
):
    settings.DAARION_PUBLIC_URL = tools_server.url  # the demo HTTP tool targets this very server
    make_agents(*DEMO_AGENTS)  # seed_demo seeds the demo agents before the tools
    assert seed() == ["tool projects.list created", "tool followups.create created"]
    assert seed() == ["tool projects.list unchanged", "tool followups.create unchanged"]
    assert Tool.objects.get(tool_id="projects.list").allowed_agents == sorted(DEMO_AGENTS)

    token = make_token(scopes=["tools"])
    wait_until_served(tools_api, token, {"projects.list", "followups.create"})
    projects = tools_api.post(
        "/internal/tools/call",
        json={
            "tool_id": "projects.list",
            "agent_id": "agent:sofia",
            "microdao_id": "microdao:7",
            "args": {"microdao_id": "microdao:7"},
        },
        headers=bearer(token),
    ).json()
    assert projects["ok"] is True, projects
    assert [p["id"] for p in projects["result"]] == ["proj-1", "proj-2", "proj-3"]

    followup = tools_api.post(
        "/internal/tools/call",
        json={
            "tool_id": "followups.create",
            "agent_id": "agent:pm",
            "microdao_id": "microdao:7",
            "args": {"microdao_id": "microdao:7", "title": "Review grants", "due_date": "2026-12-24"},
        },
        headers=bearer(token),
    ).json()
    assert followup["ok"] is True, followup
    row = Followup.objects.get()
    assert (row.title, row.agent_id, str(row.due_date)) == ("Review grants", "agent:pm", "2026-12-24")

    refused = tools_api.post(
        "/internal/tools/call",
        json={
            "tool_id": "followups.create",
            "agent_id": "agent:pm",
            "microdao_id": "microdao:7",
            "args": {"microdao_id": "microdao:7", "title": "x", "due_date": "tomorrow"},
        },
        headers=bearer(token),
    )
    assert refused.status_code == 422 and refused.json()["error"]["details"][0]["path"] == "$.due_date"


def test_demo_service_rejects_a_bad_body(tools_api):
    response = tools_api.post("/demo/projects.list", json={"nothing": 1})
    assert response.status_code == 400
    assert tools_api.get("/demo/projects.list").status_code == 405
