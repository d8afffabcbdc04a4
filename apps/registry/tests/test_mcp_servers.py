"""The `mcp-servers/` resource and the `mcp_servers:` section of registry documents.

No upstream answers here (the sync a create queues is not run); apps/tools/tests/
test_mcp_upstream.py syncs a real one."""

from __future__ import annotations

import pytest

from apps.registry.documents import registry_apply, registry_export
from apps.tools.models import McpServer, Tool
from apps.tools.services import mcp_server_create
from daarion.infra.errors import ValidationFailed
from apps.access.models import ChangeRecord

SECRET = "mcp-key-STORED-1"


def test_crud_keyed_by_name(token_client, make_agents):
    make_agents("agent:sofia", "agent:pm")
    created = token_client.post(
        "/mcp-servers/",
        json={
            "name": "weather",
            "url": "https://weather.example.com/mcp",
            "allowed_agents": ["agent:sofia"],
            "headers": {"X-Api-Key": SECRET},
            "agent_secret_headers": {"X-User-Token": "WEATHER_TOKEN"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["prefix"], body["transport"], body["timeout"]) == ("weather", "weather", "streamable_http", 30.0)
    assert body["headers"]["X-Api-Key"]["set"] is True and SECRET not in created.text
    assert body["tools"] == [] and body["protocol_version"] == ""

    got = token_client.get("/mcp-servers/weather/")
    assert got.status_code == 200 and SECRET not in got.text
    listed = token_client.get("/mcp-servers/?search=weather").json()
    assert [s["name"] for s in listed["results"]] == ["weather"]

    patched = token_client.patch(
        "/mcp-servers/weather/", json={"allowed_agents": ["agent:pm", "agent:sofia"], "headers": {"X-Api-Key": None}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["allowed_agents"] == ["agent:pm", "agent:sofia"] and patched.json()["headers"] == {}

    record = ChangeRecord.objects.filter(object_type__icontains="mcpserver").order_by("id").last()
    assert record is not None and SECRET not in str(record.changes)

    assert token_client.delete("/mcp-servers/weather/").status_code == 204
    assert not McpServer.objects.exists()


@pytest.mark.parametrize(
    "body, path",
    [
        ({"name": "w", "url": "ftp://weather.example.com/mcp"}, "url"),
        ({"name": "w", "url": "https://user:pw@weather.example.com/mcp"}, "url"),
        ({"name": "w x", "url": "https://weather.example.com/mcp"}, "name"),
        ({"name": "w", "url": "https://weather.example.com/mcp", "prefix": "a.b"}, "prefix"),
        ({"name": "w", "url": "https://weather.example.com/mcp", "allowed_agents": ["agent:ghost"]}, "allowed_agents"),
        ({"name": "w", "url": "https://weather.example.com/mcp", "headers": {"Host": "x"}}, "headers"),
        ({"name": "w", "url": "https://weather.example.com/mcp", "timeout": 0}, "timeout"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(token_client, body, path):
    response = token_client.post("/mcp-servers/", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert any(d["path"] == path for d in error["details"]), error


def test_a_name_cannot_change_and_a_duplicate_prefix_is_refused(token_client):
    assert token_client.post("/mcp-servers/", json={"name": "a", "url": "https://a.example.com/mcp"}).status_code == 201
    renamed = token_client.patch("/mcp-servers/a/", json={"name": "b"})
    assert renamed.status_code == 422 and "cannot be changed" in renamed.json()["error"]["message"]
    twin = token_client.post("/mcp-servers/", json={"name": "b", "url": "https://b.example.com/mcp", "prefix": "a"})
    assert twin.status_code == 422, twin.text


def test_a_sync_that_cannot_reach_the_upstream_is_a_502_with_the_reason(token_client, settings):
    assert token_client.post("/mcp-servers/", json={"name": "far", "url": "https://far.example.com/mcp"}).status_code == 201
    response = token_client.post("/mcp-servers/far/sync/")
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "mcp_sync_failed" and "not in TOOLS_HTTP_ALLOWED_HOSTS" in error["message"]


def test_documents_carry_mcp_servers(transactional_db, make_agents):
    make_agents("agent:sofia")
    document = {
        "mcp_servers": [
            {
                "name": "weather",
                "url": "https://weather.example.com/mcp",
                "prefix": "wx",
                "allowed_agents": ["agent:sofia"],
                "headers": {"X-Api-Key": {"value": SECRET}},
            }
        ]
    }
    plan = registry_apply(document=document)
    assert [(i.type, i.id, i.action) for i in plan.items] == [("mcp_server", "weather", "create")]
    server = McpServer.objects.get()
    assert server.prefix == "wx" and server.allowed_agents == ["agent:sofia"]

    exported = registry_export()
    [item] = exported["mcp_servers"]
    assert item["headers"] == {"X-Api-Key": {"env": "MCP_SERVER_WEATHER_X_API_KEY"}} and SECRET not in str(exported)
    again = registry_apply(document={"mcp_servers": exported["mcp_servers"]})
    assert [i.action for i in again.items] == ["unchanged"]

    with pytest.raises(ValidationFailed) as refused:
        registry_apply(document={"mcp_servers": [{"name": "bad", "url": "gopher://x"}]})
    assert refused.value.details[0]["path"].startswith("mcp_servers[0].url")

    # A synced tool is the server's: the tools section neither exports nor prunes it.
    Tool.objects.create(
        tool_id="wx.forecast", name="f", input_schema={"type": "object"}, executor="mcp", target="forecast", mcp_server=server
    )
    assert "wx.forecast" not in [t["id"] for t in registry_export()["tools"]]
    registry_apply(document={"tools": []})
    assert Tool.objects.filter(tool_id="wx.forecast").exists()

    pruned = registry_apply(document={"mcp_servers": []})
    assert [(i.id, i.action) for i in pruned.items] == [("weather", "delete")]
    kept = Tool.objects.get(tool_id="wx.forecast")
    assert kept.enabled is False and kept.mcp_server is None


def test_deleting_an_agent_takes_it_out_of_servers(transactional_db, make_agents):
    from apps.agents.models import Agent
    from apps.agents.services import agent_delete

    make_agents("agent:sofia", "agent:pm")
    mcp_server_create(
        name="weather", url="https://weather.example.com/mcp", allowed_agents=["agent:sofia", "agent:pm"], sync=False
    )
    agent_delete(agent=Agent.objects.get(pk="agent:pm"))
    assert McpServer.objects.get().allowed_agents == ["agent:sofia"]
