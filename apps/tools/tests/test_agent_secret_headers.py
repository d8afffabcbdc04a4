"""Agent secrets declared by a tool (`agent_secret_headers`): validated on every door, sent
only as the declared headers to a real HTTP target, a missing one fails the call cleanly, and
no value ever reaches an audit row, an error or the request body."""

from __future__ import annotations

import json

import pytest

from apps.registry.documents import registry_apply
from apps.tools.services import tool_update, tools_export
from apps.tools.tests.conftest import call, flushed_calls
from daarion.infra.errors import ValidationFailed

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "vendor-token-7c1d"
SECRETS = {"VENDOR_TOKEN": TOKEN, "OTHER_SECRET": "other-value-55e0", "OPENAI_API_KEY": "sk-not-for-tools"}


def test_declared_agent_secrets_are_sent_as_headers_only(make_tool, http_target, allow_local, target_requests):
    make_tool(
        "vendor.echo",
        target=f"{http_target}/echo",
        secret_headers={"X-Tool-Own": "own-1"},
        agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"},
    )
    outcome = call("vendor.echo", agent_secrets=SECRETS)
    assert outcome.ok, outcome
    [seen] = target_requests
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-vendor-token"] == TOKEN and headers["x-tool-own"] == "own-1"
    raw = json.dumps(seen)
    assert "other-value-55e0" not in raw and "sk-not-for-tools" not in raw
    assert TOKEN not in json.dumps(seen["body"]) and TOKEN not in json.dumps(outcome.result)


def test_a_missing_agent_secret_fails_before_the_target_and_leaks_nothing(make_tool, http_target, allow_local, target_requests):
    make_tool(
        "vendor.echo",
        target=f"{http_target}/echo",
        secret_headers={"X-Tool-Own": "own-1"},
        agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN", "X-Region": "REGION"},
    )
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
    with pytest.raises(ValidationFailed) as info:
        tool_update(tool=tool, agent_secret_headers=value)
    assert any(message in m for m in info.value.by_path()["agent_secret_headers"]), info.value.by_path()


def test_python_tools_cannot_declare_agent_secrets(make_tool):
    with pytest.raises(ValidationFailed) as info:
        make_tool("py.tool", executor="python", target="followups.create", agent_secret_headers={"X-Key": "S"})
    assert "agent_secret_headers" in info.value.by_path()


def test_import_and_export_carry_the_declaration(db):
    document = {
        "tools": [
            {
                "id": "vendor.lookup",
                "name": "Vendor",
                "executor": "http",
                "target": "https://vendor.example/lookup",
                "input_schema": {"type": "object"},
                "agent_secret_headers": {"X-Vendor-Token": "VENDOR_TOKEN"},
            }
        ]
    }
    assert registry_apply(document=document, prune=False).summary()["create"] == 1
    [item] = tools_export()["tools"]
    assert item["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}
    assert registry_apply(document={"tools": [item]}, prune=False).summary()["unchanged"] == 1
    bad = {"tools": [{**document["tools"][0], "agent_secret_headers": {"Host": "X"}}]}
    with pytest.raises(ValidationFailed) as info:
        registry_apply(document=bad, prune=False)
    assert info.value.details[0]["path"] == "tools[0].agent_secret_headers"


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
    body = {
        "id": "vendor.lookup",
        "name": "Vendor",
        "input_schema": {"type": "object"},
        "executor": "http",
        "target": "https://vendor.example/lookup",
        "agent_secret_headers": {"X-Vendor-Token": "VENDOR_TOKEN"},
    }
    response = api.post("/api/registry/tools/", headers=headers, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["agent_secret_headers"] == {"X-Vendor-Token": "VENDOR_TOKEN"}
    response = api.patch(
        "/api/registry/tools/vendor.lookup/", headers=headers, json={"agent_secret_headers": {"Host": "VENDOR_TOKEN"}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["path"] == "agent_secret_headers"


# --- over HTTP: POST /internal/tools/call and /mcp look the agent's secrets up ---------------


@pytest.fixture
def vendor_tool(make_tool, make_agents, http_target, tools_api, make_token):
    """agent:sofia holds VENDOR_TOKEN (and secrets no tool asks for); agent:pm holds none."""
    from apps.agents.models import Agent
    from apps.agents.services import agent_secret_set
    from apps.tools.tests.conftest import wait_until_served

    make_agents("agent:sofia", "agent:pm")
    sofia = Agent.objects.get(pk="agent:sofia")
    for name, value in SECRETS.items():
        agent_secret_set(agent=sofia, name=name, value=value)
    make_tool(
        "vendor.echo",
        target=f"{http_target}/echo",
        allowed_agents=["agent:sofia", "agent:pm"],
        agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"},
    )
    make_tool("plain.echo", target=f"{http_target}/echo")
    wait_until_served(tools_api, make_token(scopes=["tools"]), {"vendor.echo", "plain.echo"})


def _rest_call(api, headers, agent_id="agent:sofia", tool_id="vendor.echo"):
    return api.post(
        "/internal/tools/call",
        headers=headers,
        json={"tool_id": tool_id, "agent_id": agent_id, "microdao_id": "microdao:7", "args": {"microdao_id": "microdao:7"}},
    )


def _sent_headers(seen: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in seen["headers"].items()}


def _audit_rows(request_ids: list[str]) -> list:
    from apps.tools.models import ToolCall
    from apps.tools.tests.conftest import wait_for

    return wait_for(
        lambda: (rows := list(ToolCall.objects.filter(request_id__in=request_ids))) and len(rows) == len(request_ids) and rows,
        message="audit rows",
    )


def test_the_rest_call_sends_the_agents_declared_secret_and_shows_it_nowhere(
    tools_api, tools_server, make_token, bearer, vendor_tool, target_requests
):
    headers = bearer(make_token(scopes=["tools"], agents=["agent:sofia"]))
    response = _rest_call(tools_api, headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True, body
    [seen] = target_requests
    sent = _sent_headers(seen)
    assert sent["x-vendor-token"] == TOKEN
    # Only the declared secret leaves, only as its header.
    assert "other-value-55e0" not in json.dumps(seen) and "sk-not-for-tools" not in json.dumps(seen)
    assert TOKEN not in json.dumps(seen["body"])
    assert TOKEN not in response.text  # the result echoes the body, not the headers
    [row] = _audit_rows([body["request_id"]])
    assert row.status == "ok" and TOKEN not in json.dumps([row.args, row.error, row.error_type])
    # A tool that declares none is called as before, with no agent secret.
    plain = _rest_call(tools_api, headers, tool_id="plain.echo")
    assert plain.json()["ok"] is True and "x-vendor-token" not in _sent_headers(target_requests[-1])
    assert not any(value in tools_server.log_path.read_text(errors="replace") for value in SECRETS.values())


def test_an_agent_without_the_secret_gets_missing_secret_over_rest_and_mcp(
    tools_api, tools_server, make_token, bearer, vendor_tool, target_requests
):
    token = make_token(scopes=["tools"], agents=["agent:pm"])
    response = _rest_call(tools_api, bearer(token), agent_id="agent:pm")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["error_type"]) == (False, "missing_secret")
    assert body["details"] == {"missing_secrets": ["VENDOR_TOKEN"]}
    assert "VENDOR_TOKEN" in body["error"] and "agent:pm" in body["error"]
    mcp = tools_api.post(
        "/mcp",
        headers={**bearer(token), "Accept": "application/json, text/event-stream"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "vendor.echo", "arguments": {"microdao_id": "microdao:7"}},
        },
    )
    result = mcp.json()["result"]
    assert result["isError"] is True and result["content"][0]["text"].startswith("missing_secret:")
    assert "VENDOR_TOKEN" in result["content"][0]["text"]
    assert target_requests == []  # the target was never called
    rows = _audit_rows([body["request_id"], result["_meta"]["daarion/request_id"]])
    assert [r.error_type for r in rows] == ["missing_secret"] * 2
    assert not any(value in json.dumps([[r.args, r.error] for r in rows]) for value in SECRETS.values())


def test_the_mcp_call_sends_the_secret_too(tools_api, make_token, bearer, vendor_tool, target_requests):
    token = make_token(scopes=["tools"], agents=["agent:sofia"])
    mcp = tools_api.post(
        "/mcp",
        headers={**bearer(token), "Accept": "application/json, text/event-stream"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "vendor.echo", "arguments": {"microdao_id": "microdao:7"}},
        },
    )
    assert mcp.json()["result"]["isError"] is False, mcp.text
    [seen] = target_requests
    assert _sent_headers(seen)["x-vendor-token"] == TOKEN and TOKEN not in mcp.text


def test_a_secret_changed_in_the_agents_app_reaches_the_next_calls(tools_api, make_token, bearer, vendor_tool, target_requests):
    from apps.agents.models import Agent
    from apps.agents.services import agent_secret_delete, agent_secret_set
    from apps.tools.tests.conftest import wait_for

    headers = bearer(make_token(scopes=["tools"]))
    assert _rest_call(tools_api, headers).json()["ok"] is True
    assert _sent_headers(target_requests[-1])["x-vendor-token"] == TOKEN

    # A new value: the server's blueprint snapshot follows the agents version bump (within
    # LIVE_CONFIG_CHECK_INTERVAL), with no restart and no reload step.
    agent_secret_set(agent=Agent.objects.get(pk="agent:sofia"), name="VENDOR_TOKEN", value="rotated-9f3a")
    wait_for(
        lambda: (
            _rest_call(tools_api, headers).json()["ok"] and _sent_headers(target_requests[-1])["x-vendor-token"] == "rotated-9f3a"
        ),
        timeout=3.0,
        message="the rotated secret to be sent",
    )

    # A secret the snapshot lacks re-checks it at once: set a moment ago, it is there at once.
    assert _rest_call(tools_api, headers, agent_id="agent:pm").json()["error_type"] == "missing_secret"
    agent_secret_set(agent=Agent.objects.get(pk="agent:pm"), name="VENDOR_TOKEN", value="pm-token-41b2")
    body = _rest_call(tools_api, headers, agent_id="agent:pm").json()
    assert body["ok"] is True, body
    assert _sent_headers(target_requests[-1])["x-vendor-token"] == "pm-token-41b2"

    # And a deleted one is missing again.
    agent_secret_delete(agent=Agent.objects.get(pk="agent:pm"), name="VENDOR_TOKEN")
    wait_for(
        lambda: _rest_call(tools_api, headers, agent_id="agent:pm").json()["error_type"] == "missing_secret",
        timeout=3.0,
        message="the deleted secret to be missing",
    )


def test_the_registered_lookup_gives_only_the_names_asked(make_agents):
    from apps.agents.models import Agent
    from apps.agents.services import agent_secret_set
    from apps.tools.tests.conftest import run
    from daarion.infra.agent_secrets import agent_secrets_for

    make_agents("agent:sofia")
    for name, value in SECRETS.items():
        agent_secret_set(agent=Agent.objects.get(pk="agent:sofia"), name=name, value=value)
    assert run(agent_secrets_for("agent:sofia", ["VENDOR_TOKEN", "REGION"])) == {"VENDOR_TOKEN": TOKEN}
    assert run(agent_secrets_for("agent:nobody", ["VENDOR_TOKEN"])) == {}


def test_a_lookup_that_fails_is_a_failed_call_that_names_no_value(make_tool, http_target, allow_local, target_requests):
    make_tool("vendor.echo", target=f"{http_target}/echo", agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"})

    async def broken(agent_id: str, names: tuple[str, ...]) -> dict[str, str]:
        raise ConnectionError("database is gone")

    outcome = call("vendor.echo", agent_secrets=broken)
    assert (outcome.ok, outcome.error_type, outcome.status) == (False, "secrets_unavailable", "error")
    assert "agent:sofia" in outcome.error and target_requests == []
    [row] = flushed_calls()
    assert row.error_type == "secrets_unavailable"


def test_a_lookup_is_not_asked_for_a_tool_that_declares_no_secret(make_tool, http_target, allow_local, target_requests):
    make_tool("plain.echo", target=f"{http_target}/echo")
    asked = []

    async def lookup(agent_id: str, names: tuple[str, ...]) -> dict[str, str]:
        asked.append(agent_id)
        return {}

    assert call("plain.echo", agent_secrets=lookup).ok
    assert asked == [] and len(target_requests) == 1
