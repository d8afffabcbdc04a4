"""Agents in Django admin: saves go through the services (versions, validation messages on
the form) and secrets are write-only and shown masked."""

from __future__ import annotations

import json

import pytest

from apps.agents.models import Agent, AgentSecret
from apps.agents.services import agent_secret_set
from apps.agents.tests.factories import make_agent

pytestmark = pytest.mark.django_db


def _form(**overrides):
    data = {
        "id": "agent:pm",
        "name": "PM",
        "microdao_id": "microdao:7",
        "enabled": "on",
        "model": "dagi-stub",
        "system_prompt": "You plan.",
        "character": json.dumps({"bio": ["Plans things."], "topics": ["planning"]}),
        "memory_recall_limit": "5",
        "memory_kinds": "[]",
        "max_tool_steps": "3",
        "history_turns": "10",
        "history_tokens": "4000",
        "tool_mode": "native",
        "temperature": "",
        "secrets-TOTAL_FORMS": "1",
        "secrets-INITIAL_FORMS": "0",
        "secrets-MIN_NUM_FORMS": "0",
        "secrets-MAX_NUM_FORMS": "1000",
        "secrets-0-name": "PM_TOKEN",
        "secrets-0-value": "pm-secret-value-123",
    }
    data.update(overrides)
    return data


def test_add_saves_agent_and_encrypted_secret(admin_client):
    response = admin_client.post("/admin/agents/agent/add/", _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get(pk="agent:pm")
    assert agent.character["topics"] == ["planning"] and agent.max_tool_steps == 3
    assert AgentSecret.objects.get(agent=agent).value == "pm-secret-value-123"
    assert agent.version == 2  # created, then its secret set


def test_bad_character_is_a_form_error(admin_client):
    response = admin_client.post("/admin/agents/agent/add/", _form(character=json.dumps({"topics": "planning"})))
    assert response.status_code == 200
    assert "is not of type" in response.content.decode()
    assert not Agent.objects.exists()


def test_change_page_masks_secrets_and_keeps_them_when_left_empty(admin_client):
    agent = make_agent()
    secret = agent_secret_set(agent=agent, name="OPENAI_API_KEY", value="sk-live-abcdefgh12345678")
    page = admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert "sk-live-abcdefgh12345678" not in page and "••••5678" in page

    data = _form(
        id=agent.pk,
        name="Sofia-Prime",
        **{
            "secrets-TOTAL_FORMS": "1",
            "secrets-INITIAL_FORMS": "1",
            "secrets-0-id": str(secret.pk),
            "secrets-0-agent": agent.pk,
            "secrets-0-name": "OPENAI_API_KEY",
            "secrets-0-value": "",
        },
    )
    data.pop("id")
    response = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AgentSecret.objects.get(pk=secret.pk).value == "sk-live-abcdefgh12345678"
    assert Agent.objects.get(pk=agent.pk).system_prompt == "You plan."


def test_deleting_an_agent_in_admin_takes_it_out_of_the_tools(admin_client):
    from apps.tools.models import Tool
    from apps.tools.services import tool_create
    from apps.access.models import ChangeRecord

    agent = make_agent("agent:pm", name="PM")
    tool_create(
        tool_id="t.pm",
        name="PM only",
        input_schema={"type": "object"},
        executor="python",
        target="followups.create",
        allowed_agents=["agent:pm"],
    )
    response = admin_client.post(f"/admin/agents/agent/{agent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Agent.objects.exists()
    tool = Tool.objects.get(tool_id="t.pm")
    assert (tool.allowed_agents, tool.version) == ([], 2)
    record = ChangeRecord.objects.get(object_type="tools.Tool", action="update")
    assert (record.actor, record.source, record.changes["allowed_agents"]) == ("user:admin", "admin", [["agent:pm"], []])


def test_runs_are_listed_shown_with_their_chunks_cancelled_and_never_deleted(
    admin_client, api, agents_headers, sofia, llm_routes, scripted
):
    from apps.agents.models import Run
    from apps.agents.runs.chunks import stream_key
    from daarion.infra.redis_client import get_redis

    model = llm_routes("admin-runs")
    scripted.script(model, [{"text": "Shown in admin."}])
    sofia(model)
    run_id = api.post(
        "/internal/agents/agent:sofia/chat", headers=agents_headers, json={"message": "hi", "session_id": "s-admin"}
    ).json()["run_id"]
    # A run waiting behind nothing a worker could take: a row as run_start would leave it.
    waiting = Run.objects.create(id="run-waiting", agent_id="agent:sofia", session_id="s-admin-2", request={"message": "later"})

    listed = admin_client.get("/admin/agents/run/?status__exact=succeeded").content.decode()
    assert run_id in listed and "run-waiting" not in listed
    assert "run-waiting" in admin_client.get("/admin/agents/run/?session_id=s-admin-2&q=s-admin-2").content.decode()
    page = admin_client.get(f"/admin/agents/run/{run_id}/change/").content.decode()
    assert "Shown in admin." in page and "text-delta" in page  # the reply, and the stream's chunks
    assert admin_client.get(f"/admin/agents/run/{run_id}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get("/admin/agents/run/").content.decode()

    response = admin_client.post("/admin/agents/run/", {"action": "cancel_runs", "_selected_action": [waiting.pk, run_id]})
    assert response.status_code == 302
    assert Run.objects.get(pk="run-waiting").status == "cancelled"
    assert Run.objects.get(pk=run_id).status == "succeeded"
    assert get_redis().xlen(stream_key("run-waiting")) == 3  # start, finish, end marker
