"""Agent secrets declared by a tool (`agent_secret_headers`): validated on every door, sent
only as the declared headers to a real HTTP target, a missing one fails the call cleanly, and
no value ever reaches an audit row, an error or the request body."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.tools.services import tool_update, tools_export, tools_import
from apps.tools.tests.conftest import call, flushed_calls

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "vendor-token-7c1d"
SECRETS = {"VENDOR_TOKEN": TOKEN, "OTHER_SECRET": "other-value-55e0", "OPENAI_API_KEY": "sk-not-for-tools"}


def test_declared_agent_secrets_are_sent_as_headers_only(make_tool, http_target, allow_local, target_requests):
    make_tool("vendor.echo", target=f"{http_target}/echo", secret_headers={"X-Tool-Own": "own-1"},
              agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"})
    outcome = call("vendor.echo", agent_secrets=SECRETS)
    assert outcome.ok, outcome
    [seen] = target_requests
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-vendor-token"] == TOKEN and headers["x-tool-own"] == "own-1"
    raw = json.dumps(seen)
    assert "other-value-55e0" not in raw and "sk-not-for-tools" not in raw
    assert TOKEN not in json.dumps(seen["body"]) and TOKEN not in json.dumps(outcome.result)


def test_a_missing_agent_secret_fails_before_the_target_and_leaks_nothing(make_tool, http_target, allow_local, target_requests):
    make_tool("vendor.echo", target=f"{http_target}/echo", secret_headers={"X-Tool-Own": "own-1"},
              agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN", "X-Region": "REGION"})
    for secrets in (None, {"VENDOR_TOKEN": TOKEN}, {"VENDOR_TOKEN": TOKEN, "REGION": ""}):
        outcome = call("vendor.echo", agent_secrets=secrets)
        assert (outcome.ok, outcome.error_type, outcome.status) == (False, "missing_secret", "error")
        assert "REGION" in outcome.error and TOKEN not in outcome.error
        assert "REGION" in outcome.details["missing_secrets"]
    assert target_requests == []
    rows = flushed_calls()
    assert [r.error_type for r in rows] == ["missing_secret"] * 3
    assert TOKEN not in json.dumps([[r.args, r.error] for r in rows])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("X-Key", "must be an object"),
        ({"Bad Header": "S"}, "not a valid HTTP header name"),
        ({"Content-Type": "S"}, "set by toolcore"),
        ({"X-Key": "not a name!"}, "not an agent secret name"),
        ({"X-Key": 7}, "not an agent secret name"),
        ({"X-Key": "A", "x-key": "B"}, "appears twice"),
        ({"X-Tool-Own": "S"}, "already tool secret headers"),
    ],
)
def test_bad_declarations_are_refused(make_tool, value, message):
    tool = make_tool("vendor.echo", secret_headers={"X-Tool-Own": "own-1"})
    with pytest.raises(ValidationError) as info:
        tool_update(tool=tool, agent_secret_headers=value)
    assert any(message in m for m in info.value.message_dict["agent_secret_headers"]), info.value.message_dict


def test_python_tools_cannot_declare_agent_secrets(make_tool):
    with pytest.raises(ValidationError) as info:
        make_tool("py.tool", executor="python", target="followups.create", agent_secret_headers={"X-Key": "S"})
    assert "agent_secret_headers" in info.value.message_dict


def test_import_and_export_carry_the_declaration(db):
    document = {"tools": [{
        "id": "vendor.lookup", "name": "Vendor", "executor": "http", "target": "https://vendor.example/lookup",
        "input_schema": {"type": "object"}, "agent_secret_headers": {"X-Vendor-Token": "VENDOR_TOKEN"},
    }]}
    assert tools_import(document=document).created == ["vendor.lookup"]
    [item] = tools_export()["tools"]
    assert item["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}
    assert tools_import(document={"tools": [item]}).unchanged == ["vendor.lookup"]
    bad = {"tools": [{**document["tools"][0], "agent_secret_headers": {"Host": "X"}}]}
    with pytest.raises(ValidationError) as info:
        tools_import(document=bad)
    assert "tools[0] (vendor.lookup): agent_secret_headers:" in info.value.messages[0]


def test_the_api_shows_the_declared_names(api, make_tool, make_token, bearer):
    make_tool("vendor.echo", agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"})
    headers = bearer(make_token(scopes=["tools"]))
    # A miss re-checks the server's registry at once, so the new tool is there.
    response = api.get("/internal/tools/vendor.echo", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}


def test_admin_edits_the_declaration_with_the_service_rules(admin_client, make_agents):
    from apps.tools.models import Tool
    from apps.tools.tests.test_admin import ADD_URL, _form

    make_agents("agent:sofia", "agent:pm")

    response = admin_client.post(ADD_URL, _form(agent_secret_headers=json.dumps({"Host": "VENDOR_TOKEN"})))
    assert response.status_code == 200 and "set by toolcore" in response.content.decode()
    response = admin_client.post(ADD_URL, _form(agent_secret_headers=json.dumps({"X-Vendor-Token": "VENDOR_TOKEN"})))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Tool.objects.get(tool_id="projects.list").agent_secret_headers == {"X-Vendor-Token": "VENDOR_TOKEN"}


def test_the_registry_api_reads_and_writes_the_declaration(api, make_token, bearer):
    headers = bearer(make_token(scopes=["registry"]))
    body = {"id": "vendor.lookup", "name": "Vendor", "input_schema": {"type": "object"}, "executor": "http",
            "target": "https://vendor.example/lookup", "agent_secret_headers": {"X-Vendor-Token": "VENDOR_TOKEN"}}
    response = api.post("/api/registry/tools/", headers=headers, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}
    response = api.patch("/api/registry/tools/vendor.lookup/", headers=headers,
                         json={"agent_secret_headers": {"Host": "VENDOR_TOKEN"}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == "agent_secret_headers"
