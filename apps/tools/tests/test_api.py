"""The /internal/tools API over real HTTP: listing in three shapes, calling, every refusal."""

from __future__ import annotations

import pytest

from apps.tools.models import ToolCall
from apps.tools.services import tool_update
from apps.tools.tests.conftest import wait_for, wait_until_served


@pytest.fixture
def token(make_token):
    return make_token(scopes=["tools"])


@pytest.fixture
def tools(make_tool, http_target, tools_api, token):
    created = {
        "projects.list": make_tool(
            "projects.list", target=f"{http_target}/projects", allowed_agents=["agent:sofia", "agent:pm"],
            output_schema={"type": "array", "items": {"type": "object"}}, read_only=True,
        ),
        "echo.any": make_tool("echo.any", target=f"{http_target}/echo", secret_headers={"X-Key": "sk-never-shown"}),
        "projects__list": make_tool("projects__list", target=f"{http_target}/echo"),
        "off.tool": make_tool("off.tool", enabled=False),
    }
    wait_until_served(tools_api, token, {"projects.list", "echo.any", "projects__list"})
    return created


def _call(api, token, bearer, **body):
    payload = {"tool_id": "projects.list", "agent_id": "agent:sofia", "microdao_id": "microdao:7",
               "args": {"microdao_id": "microdao:7"}}
    payload.update(body)
    return api.post("/internal/tools/call", json=payload, headers=bearer(token))


def test_list_native_filtered_and_without_secrets(tools_api, token, bearer, tools):
    all_tools = tools_api.get("/internal/tools", headers=bearer(token)).json()["tools"]
    assert [t["id"] for t in all_tools] == ["echo.any", "projects.list", "projects__list"]  # disabled left out
    assert "sk-never-shown" not in tools_api.get("/internal/tools", headers=bearer(token)).text
    for_cto = tools_api.get("/internal/tools", params={"agent_id": "agent:cto"}, headers=bearer(token)).json()
    assert [t["id"] for t in for_cto["tools"]] == ["echo.any", "projects__list"]
    one = tools_api.get("/internal/tools/projects.list", headers=bearer(token)).json()
    assert one["annotations"] == {"read_only": True, "destructive": False, "idempotent": False}
    assert one["allowed_agents"] == ["agent:pm", "agent:sofia"] and one["version"] == 1


def test_list_openai_shape_maps_names_reversibly(tools_api, token, bearer, tools):
    body = tools_api.get("/internal/tools", params={"format": "openai", "agent_id": "agent:sofia"}, headers=bearer(token)).json()
    names = [t["function"]["name"] for t in body["tools"]]
    assert body["function_map"][names[1]] == "projects.list"
    assert set(body["function_map"].values()) == {"echo.any", "projects.list", "projects__list"}
    assert len(set(names)) == 3
    spec = body["tools"][1]
    assert spec["type"] == "function" and spec["function"]["parameters"]["required"] == ["microdao_id"]


def test_list_mcp_shape(tools_api, token, bearer, tools):
    body = tools_api.get("/internal/tools", params={"format": "mcp", "agent_id": "agent:sofia"}, headers=bearer(token)).json()
    listed = {t["name"]: t for t in body["tools"]}
    assert listed["projects.list"]["inputSchema"]["type"] == "object"
    assert listed["projects.list"]["annotations"]["readOnlyHint"] is True
    assert "outputSchema" not in listed["projects.list"]  # an array result is not MCP structured content


def test_call_ok(tools_api, token, bearer, tools):
    response = _call(tools_api, token, bearer, **{"context": {"channel_id": "c-1"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["result"] == [{"id": "p1", "name": "One"}]
    assert body["error"] is None and body["latency_ms"] > 0
    assert body["request_id"] == response.headers["x-request-id"]
    row = wait_for(lambda: ToolCall.objects.filter(request_id=body["request_id"]).first(), message="audit row")
    assert row.status == "ok" and row.agent_id == "agent:sofia"


def test_call_failure_is_200_with_ok_false(tools_api, token, bearer, make_tool, http_target):
    make_tool("t.fail", target=f"{http_target}/fail")
    body = _call(tools_api, token, bearer, tool_id="t.fail").json()
    assert body["ok"] is False and body["error_type"] == "upstream_status"
    assert body["details"]["status"] == 503


def test_refusals_have_their_status_and_envelope(tools_api, make_token, token, bearer, tools):
    cases = [
        (_call(tools_api, token, bearer, tool_id="nope"), 404, "tool_not_found"),
        (_call(tools_api, token, bearer, tool_id="off.tool"), 404, "tool_disabled"),
        (_call(tools_api, token, bearer, agent_id="agent:cto"), 403, "tool_not_allowed"),
        (_call(tools_api, make_token(scopes=["tools"], agents=["agent:pm"]), bearer), 403, "agent_not_allowed"),
        (_call(tools_api, make_token(scopes=["llm"]), bearer), 403, "scope_not_allowed"),
        (tools_api.post("/internal/tools/call", json={}), 401, "unauthorized"),
        (_call(tools_api, token, bearer, args={"microdao_id": 7}), 422, "invalid_args"),
        (_call(tools_api, token, bearer, args=[1]), 422, "validation_error"),
        (_call(tools_api, token, bearer, tool_id=""), 422, "validation_error"),
        (tools_api.post("/internal/tools/call", content=b"{not json", headers={**bearer(token), "Content-Type": "application/json"}), 400, None),
        (tools_api.get("/internal/tools/nope", headers=bearer(token)), 404, "tool_not_found"),
        (tools_api.get("/internal/tools", params={"format": "xml"}, headers=bearer(token)), 422, "validation_error"),
        (tools_api.get("/internal/tools", params={"agent_id": "agent:cto"},
                       headers=bearer(make_token(scopes=["tools"], agents=["agent:pm"]))), 403, "agent_not_allowed"),
    ]
    for response, status, error_type in cases:
        assert response.status_code in ((400, 422) if status == 400 else (status,)), (response.status_code, response.text)
        error = response.json()["error"]
        if error_type:
            assert error["type"] == error_type, error
        assert error["message"], error
    invalid = _call(tools_api, token, bearer, args={"microdao_id": 7}).json()["error"]
    assert invalid["details"] == [{"path": "$.microdao_id", "message": "7 is not of type 'string'"}]
    # Refused calls are audited too: not found, disabled, denied (tool and token), invalid args.
    statuses = wait_for(
        lambda: (s := sorted(ToolCall.objects.values_list("status", flat=True))) and len(s) >= 6 and s,
        message="audit rows",
    )
    assert {"not_found", "denied", "invalid_args"} <= set(statuses)


def test_rate_limited_answers_429_with_retry_after(tools_api, token, bearer, make_tool, http_target):
    make_tool("t.limited", target=f"{http_target}/echo", rate_limit_per_minute=1)
    assert _call(tools_api, token, bearer, tool_id="t.limited").status_code == 200
    response = _call(tools_api, token, bearer, tool_id="t.limited")
    assert response.status_code == 429 and response.json()["error"]["type"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_admin_change_is_live_within_a_second(tools_api, token, bearer, tools):
    assert _call(tools_api, token, bearer).status_code == 200
    tool_update(tool=tools["projects.list"], allowed_agents=["agent:pm"])
    wait_for(lambda: _call(tools_api, token, bearer).status_code == 403, timeout=2.0, message="the change to be live")
