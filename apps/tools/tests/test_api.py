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
            "projects.list",
            target=f"{http_target}/projects",
            allowed_agents=["agent:sofia", "agent:pm"],
            output_schema={"type": "array", "items": {"type": "object"}},
            read_only=True,
        ),
        "echo.any": make_tool("echo.any", target=f"{http_target}/echo", secret_headers={"X-Key": "sk-never-shown"}),
        "projects__list": make_tool("projects__list", target=f"{http_target}/echo"),
        "off.tool": make_tool("off.tool", enabled=False),
    }
    wait_until_served(tools_api, token, {"projects.list", "echo.any", "projects__list"})
    return created


def _call(api, token, bearer, **body):
    payload = {
        "tool_id": "projects.list",
        "agent_id": "agent:sofia",
        "microdao_id": "microdao:7",
        "args": {"microdao_id": "microdao:7"},
    }
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


def test_the_acting_agent_is_the_one_rule_of_every_door(tools_api, make_token, bearer, tools):
    # Principal.acting_agent, as on the LLM proxy and /mcp: a token bound to one agent may leave
    # agent_id out; any other must name it (422 agent_required); one bound to none acts for none.
    sofia = make_token(scopes=["tools"], agents=["agent:sofia"])
    body = _call(tools_api, sofia, bearer, agent_id=None).json()
    assert body["ok"] is True, body
    row = wait_for(lambda: ToolCall.objects.filter(request_id=body["request_id"]).first(), message="audit row")
    assert row.agent_id == "agent:sofia"
    for agents in (None, ["agent:sofia", "agent:pm"]):
        response = _call(tools_api, make_token(scopes=["tools"], agents=agents), bearer, agent_id=None)
        error = response.json()["error"]
        assert response.status_code == 422 and error["type"] == "agent_required", error
        assert error["details"][0]["path"] == "body.agent_id"
    nobody = _call(tools_api, make_token(scopes=["tools"], agents=[]), bearer, agent_id=None)
    assert nobody.status_code == 403 and nobody.json()["error"]["type"] == "agent_not_allowed"


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
        (
            tools_api.post(
                "/internal/tools/call", content=b"{not json", headers={**bearer(token), "Content-Type": "application/json"}
            ),
            400,
            None,
        ),
        (tools_api.get("/internal/tools/nope", headers=bearer(token)), 404, "tool_not_found"),
        (tools_api.get("/internal/tools", params={"format": "xml"}, headers=bearer(token)), 422, "validation_error"),
        (
            tools_api.get(
                "/internal/tools",
                params={"agent_id": "agent:cto"},
                headers=bearer(make_token(scopes=["tools"], agents=["agent:pm"])),
            ),
            403,
            "agent_not_allowed",
        ),
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


# --- a token bound to agents sees only its agents' tools ----------------------------------


@pytest.fixture
def hidden_tools(tools, make_tool, http_target, tools_api, token):
    """Besides `tools`: one tool only the CTO may call, and a disabled one only the CTO may."""
    make_tool("cto.only", target=f"{http_target}/echo", allowed_agents=["agent:cto"])
    make_tool("cto.off", target=f"{http_target}/echo", allowed_agents=["agent:cto"], enabled=False)
    wait_until_served(tools_api, token, {"projects.list", "echo.any", "projects__list", "cto.only"})


def _listed(api, token, bearer, **params) -> dict[str, list[str]]:
    """Tool ids of the listing in each of the three shapes."""
    shapes = {}
    for fmt in ("native", "openai", "mcp"):
        response = api.get("/internal/tools", params={**params, "format": fmt}, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        shapes[fmt] = (
            [t["id"] for t in body["tools"]]
            if fmt == "native"
            else sorted(body["function_map"][t["function"]["name"]] for t in body["tools"])
            if fmt == "openai"
            else [t["name"] for t in body["tools"]]
        )
    return shapes


def test_a_bound_token_lists_only_its_agents_tools_in_every_shape(tools_api, token, make_token, bearer, hidden_tools):
    every = ["cto.only", "echo.any", "projects.list", "projects__list"]
    assert set(map(tuple, _listed(tools_api, token, bearer).values())) == {tuple(every)}  # unbound: as before

    pm = make_token(scopes=["tools"], agents=["agent:pm"])
    for_pm = ["echo.any", "projects.list", "projects__list"]
    assert _listed(tools_api, pm, bearer) == {"native": for_pm, "openai": for_pm, "mcp": for_pm}
    # Naming its agent gives the same; naming another is still refused.
    assert _listed(tools_api, pm, bearer, agent_id="agent:pm")["native"] == for_pm
    refused = tools_api.get("/internal/tools", params={"agent_id": "agent:cto"}, headers=bearer(pm))
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "agent_not_allowed"

    # Bound to several agents: the union of what each may call; naming one narrows to it.
    pm_and_cto = make_token(scopes=["tools"], agents=["agent:pm", "agent:cto"])
    assert _listed(tools_api, pm_and_cto, bearer)["native"] == every
    assert _listed(tools_api, pm_and_cto, bearer, agent_id="agent:cto")["mcp"] == ["cto.only", "echo.any", "projects__list"]

    # Bound to no agent: it may act for none, so it sees no tool (not even those open to every agent).
    nobody = make_token(scopes=["tools"], agents=[])
    assert _listed(tools_api, nobody, bearer) == {"native": [], "openai": [], "mcp": []}


def test_a_tool_its_agents_may_not_call_is_not_found_for_a_bound_token(tools_api, token, make_token, bearer, hidden_tools):
    pm = make_token(scopes=["tools"], agents=["agent:pm"])
    missing = tools_api.get("/internal/tools/no.such.tool", headers=bearer(pm))
    assert missing.status_code == 404
    for tool_id in ("cto.only", "cto.off"):  # enabled or not: nothing tells it the tool exists
        response = tools_api.get(f"/internal/tools/{tool_id}", headers=bearer(pm))
        assert response.status_code == 404, response.text
        assert response.json() == {"error": {**missing.json()["error"], "message": f"no tool {tool_id!r}"}}
        # The unbound token, and a token of an agent that may call it, still get the definition.
        assert tools_api.get(f"/internal/tools/{tool_id}", headers=bearer(token)).status_code == 200
        cto = make_token(scopes=["tools"], agents=["agent:cto"])
        assert tools_api.get(f"/internal/tools/{tool_id}", headers=bearer(cto)).json()["id"] == tool_id
    visible = tools_api.get("/internal/tools/projects.list", headers=bearer(pm))
    assert visible.status_code == 200 and "sk-never-shown" not in visible.text


def test_calling_a_tool_its_agents_may_not_call_answers_as_if_it_did_not_exist(
    tools_api, token, make_token, bearer, hidden_tools
):
    pm = make_token(scopes=["tools"], agents=["agent:pm"])
    unknown = _call(tools_api, pm, bearer, tool_id="no.such.tool", agent_id="agent:pm")
    assert unknown.status_code == 404
    shape = unknown.json()["error"]
    for tool_id in ("cto.only", "cto.off"):  # not tool_not_allowed, nor tool_disabled
        response = _call(tools_api, pm, bearer, tool_id=tool_id, agent_id="agent:pm")
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["type"], error["message"], set(error["details"])) == (
            "tool_not_found",
            f"no tool {tool_id!r}",
            set(shape["details"]),
        )
    # A token whose other agent may call it knows the tool: that refusal is the real one.
    pm_and_cto = make_token(scopes=["tools"], agents=["agent:pm", "agent:cto"])
    denied = _call(tools_api, pm_and_cto, bearer, tool_id="cto.only", agent_id="agent:pm")
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "tool_not_allowed"
    # The unbound token's answers are as before.
    assert _call(tools_api, token, bearer, tool_id="cto.only", agent_id="agent:pm").json()["error"]["type"] == "tool_not_allowed"
    assert _call(tools_api, token, bearer, tool_id="cto.off", agent_id="agent:pm").json()["error"]["type"] == "tool_disabled"
    # The audit trail keeps the real reason of the hidden refusals.
    rows = wait_for(
        lambda: (r := list(ToolCall.objects.filter(tool_id__in=["cto.only", "cto.off"]).order_by("id"))) and len(r) >= 5 and r,
        message="audit rows",
    )
    assert [(r.tool_id, r.error_type) for r in rows[:2]] == [("cto.only", "tool_not_allowed"), ("cto.off", "tool_disabled")]


def test_a_bound_token_sees_only_its_own_agents_in_allowed_agents(tools_api, token, make_token, make_tool, bearer, http_target):
    make_tool("team.tool", target=f"{http_target}/echo", allowed_agents=["agent:cto", "agent:pm", "agent:sofia"])
    make_tool("team.off", target=f"{http_target}/echo", allowed_agents=["agent:cto", "agent:pm"], enabled=False)
    make_tool("open.tool", target=f"{http_target}/echo")  # null: every agent
    wait_until_served(tools_api, token, {"team.tool", "open.tool"})

    def seen(raw_token: str, **params: str) -> dict[str, object]:
        """allowed_agents per tool id, from the native listing and from each definition."""
        listing = tools_api.get("/internal/tools", params=params, headers=bearer(raw_token))
        assert listing.status_code == 200, listing.text
        listed = {t["id"]: t["allowed_agents"] for t in listing.json()["tools"]}
        for tool_id, allowed in listed.items():
            one = tools_api.get(f"/internal/tools/{tool_id}", headers=bearer(raw_token))
            assert one.status_code == 200 and one.json()["allowed_agents"] == allowed, one.text
        return listed

    # Unbound: the whole lists, as before.
    assert seen(token) == {"open.tool": None, "team.tool": ["agent:cto", "agent:pm", "agent:sofia"]}
    assert tools_api.get("/internal/tools/team.off", headers=bearer(token)).json()["allowed_agents"] == ["agent:cto", "agent:pm"]

    # Bound to one agent: only that agent is named; null stays null (it names nobody).
    pm = make_token(scopes=["tools"], agents=["agent:pm"])
    assert seen(pm) == {"open.tool": None, "team.tool": ["agent:pm"]}
    assert seen(pm, agent_id="agent:pm") == {"open.tool": None, "team.tool": ["agent:pm"]}
    off = tools_api.get("/internal/tools/team.off", headers=bearer(pm))  # disabled, still visible
    assert off.status_code == 200 and off.json()["allowed_agents"] == ["agent:pm"]
    for path in ("/internal/tools", "/internal/tools/team.tool", "/internal/tools/team.off"):
        body = tools_api.get(path, headers=bearer(pm)).text
        assert "agent:cto" not in body and "agent:sofia" not in body

    # Bound to several: the token's own agents among them, however the listing is narrowed
    # (naming one of its agents does not hide the other one it may act for anyway).
    cto_and_sofia = make_token(scopes=["tools"], agents=["agent:sofia", "agent:cto"])
    expected = {"open.tool": None, "team.tool": ["agent:cto", "agent:sofia"]}
    assert seen(cto_and_sofia) == expected
    assert seen(cto_and_sofia, agent_id="agent:sofia") == expected
    assert tools_api.get("/internal/tools/team.off", headers=bearer(cto_and_sofia)).json()["allowed_agents"] == ["agent:cto"]

    # Bound to an agent the tool does not allow: the tool is not there at all (as before).
    other = make_token(scopes=["tools"], agents=["agent:other"])
    assert seen(other) == {"open.tool": None}
    assert tools_api.get("/internal/tools/team.tool", headers=bearer(other)).status_code == 404
