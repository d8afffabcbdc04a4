"""Admin edits go through the same service rules; secrets are write-only and masked."""

from __future__ import annotations

import html
import json
import re

import pytest

from apps.tools.models import Tool

pytestmark = pytest.mark.django_db(transaction=True)

ADD_URL = "/admin/tools/tool/add/"


def _form(**overrides):
    data = {
        "tool_id": "projects.list",
        "name": "List projects",
        "description": "lists",
        "enabled": "on",
        "executor": "http",
        "target": "http://127.0.0.1:8000/demo/projects.list",
        "timeout": "5",
        "rate_limit_per_minute": "",
        "input_schema": json.dumps({"type": "object", "properties": {"microdao_id": {"type": "string"}}}),
        "output_schema": "null",
        "every_agent": "",
        "agents": "agent:sofia\nagent:pm",
        "set_secret_headers": "X-Api-Key: sk-admin-secret-9999",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_add_edit_and_mask_secrets(admin_client, make_agents):
    make_agents("agent:sofia", "agent:pm")
    response = admin_client.post(ADD_URL, _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    tool = Tool.objects.get(tool_id="projects.list")
    assert tool.allowed_agents == ["agent:pm", "agent:sofia"]
    assert json.loads(tool.secret_headers) == {"X-Api-Key": "sk-admin-secret-9999"}
    page = admin_client.get(f"/admin/tools/tool/{tool.pk}/change/").content.decode()
    assert "sk-admin-secret-9999" not in page and "••••9999" in page

    # Editing without touching secrets keeps them; "every agent" stores null; version goes up.
    response = admin_client.post(
        f"/admin/tools/tool/{tool.pk}/change/", _form(tool_id=None, every_agent="on", set_secret_headers="")
    )
    assert response.status_code == 302, [line for line in response.content.decode().splitlines() if "errorlist" in line]
    tool.refresh_from_db()
    assert tool.allowed_agents is None and tool.version == 2
    assert json.loads(tool.secret_headers) == {"X-Api-Key": "sk-admin-secret-9999"}


def test_empty_list_means_no_agent(admin_client):
    admin_client.post(ADD_URL, _form(agents="", set_secret_headers=""))
    assert Tool.objects.get().allowed_agents == []


def _agents_field_errors(response) -> str:
    page = response.content.decode()
    found = re.search(r'<ul class="errorlist"[^>]*id="id_agents_error"[^>]*>(.*?)</ul>', page, re.S)
    assert found, "no errors on the agents field"
    return html.unescape(found.group(1))


def test_an_unknown_agent_is_refused_on_the_agents_field(admin_client, make_agents):
    make_agents("agent:sofia", "agent:pm")
    response = admin_client.post(ADD_URL, _form(agents="agent:sofia\nagent:pmm\nagent:ghost"))
    assert response.status_code == 200
    errors = _agents_field_errors(response)
    assert "no agent 'agent:pmm' in the registry (create the agent first" in errors
    assert "no agent 'agent:ghost'" in errors and "agent:sofia'" not in errors
    assert not Tool.objects.exists()

    # Editing a stored tool: the same refusal, and the stored list stays as it was.
    assert admin_client.post(ADD_URL, _form(set_secret_headers="")).status_code == 302
    tool = Tool.objects.get()
    response = admin_client.post(
        f"/admin/tools/tool/{tool.pk}/change/", _form(tool_id=None, agents="agent:pm\nagent:pmm", set_secret_headers="")
    )
    assert response.status_code == 200
    assert "no agent 'agent:pmm'" in _agents_field_errors(response)
    tool.refresh_from_db()
    assert tool.allowed_agents == ["agent:pm", "agent:sofia"] and tool.version == 1


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"input_schema": json.dumps({"type": "objekt"})}, "not a valid JSON Schema"),
        ({"output_schema": json.dumps({"type": 5})}, "not a valid JSON Schema"),
        ({"executor": "python", "target": "os.system", "set_secret_headers": ""}, "no @tool_function"),
        ({"set_secret_headers": "no colon here"}, "expected"),
        ({"set_secret_headers": "Content-Type: x"}, "set by toolcore"),
        ({"tool_id": "bad id"}, "1-128 characters"),
    ],
)
def test_invalid_input_is_shown_on_the_form(admin_client, overrides, fragment):
    response = admin_client.post(ADD_URL, _form(**overrides))
    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert not Tool.objects.exists()


def test_audit_rows_are_read_only(admin_client):
    assert admin_client.get("/admin/tools/toolcall/add/").status_code == 403
    assert admin_client.get("/admin/tools/toolcall/").status_code == 200
