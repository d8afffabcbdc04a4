"""/internal/llm over real HTTP: proxy, stream, batch, models, and every bad input."""

from __future__ import annotations

import json

import pytest

from apps.llm import services
from apps.llm.tests.conftest import usage_rows, wait_for

PROJECT_TOOL = {
    "type": "function",
    "function": {"name": "projects.list", "description": "List projects", "parameters": {"type": "object", "properties": {}}},
}


def _proxy_body(**overrides) -> dict:
    body = {
        "model": "dagi-stub",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello proxy"}],
        "metadata": {"agent_id": "agent:sofia", "microdao_id": "microdao:7", "channel_id": "chan-1"},
    }
    body.update(overrides)
    return body


def test_proxy_answers_the_seed_shape(api, stub_model, llm_headers, live):
    live()
    response = api.post("/internal/llm/proxy", json=_proxy_body(request_id="req-api-1"), headers=llm_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == "[stub] You said: hello proxy"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    assert (body["provider"], body["model_resolved"], body["request_id"]) == ("stub", "dagi-stub", "req-api-1")
    assert body["tool_calls"] == []
    assert float(response.headers["x-daarion-overhead-ms"]) >= 0
    rows = usage_rows(request_id="req-api-1")
    assert rows, "the server's usage record reaches the database through the Redis buffer"
    assert (rows[0].agent_id, rows[0].channel_id, rows[0].endpoint, rows[0].status) == ("agent:sofia", "chan-1", "proxy", "ok")


def test_proxy_returns_tool_calls(api, stub_model, llm_headers, live):
    live()
    body = _proxy_body(messages=[{"role": "user", "content": "show the projects"}], tools=[PROJECT_TOOL], tool_choice="auto")
    response = api.post("/internal/llm/proxy", json=body, headers=llm_headers)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["finish_reason"] == "tool_calls"
    assert data["tool_calls"][0]["name"] == "projects.list"
    assert json.loads(data["tool_calls"][0]["arguments"]) == {}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "body.model"),
        (_proxy_body(messages=[]), "body.messages"),
        (_proxy_body(messages=[{"role": "robot", "content": "x"}]), "body.messages.0.role"),
        (_proxy_body(temperature=5), "body.temperature"),
        (_proxy_body(max_tokens=0), "body.max_tokens"),
        (_proxy_body(request_id="bad id with spaces"), "body.request_id"),
        (_proxy_body(tools=[{"type": "function", "function": {"name": ""}}]), "body.tools.0.function.name"),
        (_proxy_body(tools=[{"type": "retrieval"}]), "body.tools.0.type"),
        (_proxy_body(metadata={"agent_id": "agent sofia!"}), "body.metadata.agent_id"),
        (_proxy_body(response_format={"type": "yaml"}), "body.response_format"),
        (_proxy_body(tool_choice="sometimes"), "body.tool_choice"),
        (_proxy_body(messages=[{"role": "assistant", "tool_calls": [{"id": "x"}]}]), "body.messages.0.tool_calls"),
    ],
)
def test_bad_input_is_422_with_the_path(api, stub_model, llm_headers, body, path, live):
    live()
    response = api.post("/internal/llm/proxy", json=body, headers=llm_headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert any(d["path"].startswith(path) for d in error["details"]), error["details"]


def test_not_json_is_an_error_in_the_envelope(api, stub_model, llm_headers, live):
    live()
    response = api.post("/internal/llm/proxy", content=b"{nope", headers={**llm_headers, "Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert "error" in response.json()


def test_unknown_and_disabled_models_are_404(api, stub_model, llm_headers, live):
    live()
    response = api.post("/internal/llm/proxy", json=_proxy_body(model="gpt-9"), headers=llm_headers)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_not_found"
    services.logical_model_update(model=stub_model, enabled=False)
    response = wait_for(
        lambda: (r := api.post("/internal/llm/proxy", json=_proxy_body(), headers=llm_headers)).status_code == 404 and r
    )
    assert response and response.json()["error"]["type"] == "model_disabled"


def test_auth_scope_and_agent_binding(api, stub_model, make_token, bearer, live):
    live()
    assert api.post("/internal/llm/proxy", json=_proxy_body()).status_code == 401
    memory_only = bearer(make_token(scopes=["memory"]))
    response = api.post("/internal/llm/proxy", json=_proxy_body(), headers=memory_only)
    assert response.status_code == 403 and response.json()["error"]["type"] == "scope_not_allowed"
    bound = bearer(make_token(scopes=["llm"], agents=["agent:pm"]))
    response = api.post("/internal/llm/proxy", json=_proxy_body(), headers=bound)
    assert response.status_code == 403 and response.json()["error"]["type"] == "agent_not_allowed"
    # A token bound to one agent acts for it when the request names none.
    body = _proxy_body(metadata={}, request_id="req-bound-1")
    assert api.post("/internal/llm/proxy", json=body, headers=bound).status_code == 200
    assert usage_rows(request_id="req-bound-1")[0].agent_id == "agent:pm"
    several = bearer(make_token(scopes=["llm"], agents=["agent:pm", "agent:cto"]))
    response = api.post("/internal/llm/proxy", json=_proxy_body(metadata={}), headers=several)
    error = response.json()["error"]
    assert response.status_code == 422 and error["type"] == "agent_required"
    assert error["details"][0]["path"] == "body.metadata.agent_id"
    # Bound to no agent (each was deleted): it acts for none, named or not.
    nobody = bearer(make_token(scopes=["llm"], agents=[]))
    response = api.post("/internal/llm/proxy", json=_proxy_body(metadata={}), headers=nobody)
    assert response.status_code == 403 and response.json()["error"]["type"] == "agent_not_allowed"


def test_batch_answers_in_order_with_per_item_errors(api, stub_model, llm_headers, live):
    live()
    body = {
        "requests": [
            _proxy_body(messages=[{"role": "user", "content": "first"}]),
            _proxy_body(model="missing-model"),
            _proxy_body(messages=[{"role": "user", "content": "third"}]),
        ],
        "concurrency": 2,
    }
    response = api.post("/internal/llm/batch", json=body, headers=llm_headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["ok"] and results[0]["response"]["content"] == "[stub] You said: first"
    assert not results[1]["ok"] and results[1]["status"] == 404 and results[1]["error"]["type"] == "model_not_found"
    assert results[2]["response"]["content"] == "[stub] You said: third"


def test_batch_bad_input(api, stub_model, llm_headers, live):
    live()
    assert api.post("/internal/llm/batch", json={"requests": []}, headers=llm_headers).status_code == 422
    response = api.post("/internal/llm/batch", json={"requests": [_proxy_body()], "concurrency": 0}, headers=llm_headers)
    assert response.status_code == 422
    too_many = {"requests": [_proxy_body()] * 101}
    response = api.post("/internal/llm/batch", json=too_many, headers=llm_headers)
    assert response.status_code == 422 and "at most 100" in response.json()["error"]["message"]


def test_models_lists_deployments_with_health(api, stub_model, llm_headers, live):
    live()
    response = api.get("/internal/llm/models", headers=llm_headers)
    assert response.status_code == 200
    model = next(m for m in response.json()["models"] if m["name"] == "dagi-stub")
    assert model["healthy"] is True
    assert model["deployments"][0]["provider"] == "stub"
    assert model["deployments"][0]["cooling_down"] is False


def _sse_events(text: str) -> list:
    events = []
    for block in text.split("\n\n"):
        block = block.strip()
        if block.startswith("data: "):
            payload = block[6:]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_stream_speaks_the_ui_message_stream_protocol(api, stub_model, llm_headers, live):
    live()
    response = api.post("/internal/llm/stream", json=_proxy_body(request_id="req-stream-1"), headers=llm_headers)
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(response.text)
    types = [e["type"] if isinstance(e, dict) else e for e in events]
    assert types[:4] == ["start", "start-step", "text-start", "text-delta"]
    assert types[-5:] == ["text-delta", "text-end", "finish-step", "finish", "[DONE]"]
    text = "".join(e["delta"] for e in events if isinstance(e, dict) and e["type"] == "text-delta")
    assert text == "[stub] You said: hello proxy"
    finish = events[-2]
    assert set(finish) == {"type", "messageMetadata"}
    assert finish["messageMetadata"]["usage"]["total_tokens"] == 11
    # Only protocol-defined fields: each chunk type has its own known keys.
    allowed = {
        "start": {"type", "messageId"},
        "start-step": {"type"},
        "text-start": {"type", "id"},
        "text-delta": {"type", "id", "delta"},
        "text-end": {"type", "id"},
        "finish-step": {"type"},
        "finish": {"type", "messageMetadata"},
    }
    for event in events[:-1]:
        assert set(event) <= allowed[event["type"]], event
    rows = usage_rows(request_id="req-stream-1")
    assert rows and rows[0].stream and rows[0].status == "ok" and rows[0].ttft_ms is not None


def test_stream_tool_calls_arrive_as_tool_input_chunks(api, stub_model, llm_headers, live):
    live()
    body = _proxy_body(messages=[{"role": "user", "content": "list projects please"}], tools=[PROJECT_TOOL])
    events = _sse_events(api.post("/internal/llm/stream", json=body, headers=llm_headers).text)
    start = next(e for e in events if isinstance(e, dict) and e["type"] == "tool-input-start")
    available = next(e for e in events if isinstance(e, dict) and e["type"] == "tool-input-available")
    assert start["toolName"] == available["toolName"] == "projects.list"
    assert available["toolCallId"] == start["toolCallId"]
    assert available["input"] == {}
    assert events[-2]["messageMetadata"]["finish_reason"] == "tool_calls"


def test_stream_errors_before_the_stream_are_http_errors(api, stub_model, llm_headers, live):
    live()
    response = api.post("/internal/llm/stream", json=_proxy_body(model="nope"), headers=llm_headers)
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"
    response = api.post("/internal/llm/stream", json=_proxy_body(messages=[]), headers=llm_headers)
    assert response.status_code == 422


def test_upstream_failures_map_to_502_504_and_400(api, fake_provider, make_model, llm_headers, live):
    from apps.llm import services as llm_services

    llm_services.provider_update(provider=fake_provider, timeout_seconds=0.3)
    make_model("broken", fake_provider, "error:500")
    make_model("sleepy", fake_provider, "hang")
    make_model("strict", fake_provider, "bad-request")
    live()
    response = api.post("/internal/llm/proxy", json=_proxy_body(model="broken"), headers=llm_headers)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["details"]["attempts"][0] | {"message": None} == {
        "model": "broken",
        "provider": "fake",
        "upstream_model": "error:500",
        "error_type": "server",
        "status": 500,
        "message": None,
    }
    response = api.post("/internal/llm/proxy", json=_proxy_body(model="sleepy"), headers=llm_headers)
    assert response.status_code == 504 and response.json()["error"]["type"] == "upstream_timeout"
    response = api.post("/internal/llm/proxy", json=_proxy_body(model="strict"), headers=llm_headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "upstream_bad_request"
    assert "too long" in response.json()["error"]["message"]


def test_v1_bad_input_is_openais_400_naming_the_field(api, stub_model, llm_headers, live):
    live()
    message = [{"role": "user", "content": "x"}]
    cases = [
        ("/v1/chat/completions", {"model": "dagi-stub", "messages": message, "n": 2}, "n", "unsupported_parameter"),
        ("/v1/chat/completions", {"model": "dagi-stub"}, "messages", "missing_required_parameter"),
        ("/v1/chat/completions", {"model": "dagi-stub", "messages": message, "stream": "yes please"}, "stream", "invalid_type"),
        ("/v1/chat/completions", {"model": "dagi-stub", "messages": message, "top_p": 3}, "top_p", "invalid_value"),
        ("/v1/embeddings", {"model": "dagi-stub", "input": []}, "input", "invalid_value"),
        ("/v1/embeddings", {"model": "dagi-stub", "input": [1, "a"]}, "input", "invalid_type"),
        ("/v1/embeddings", {"model": "dagi-stub", "input": "x", "encoding_format": "int8"}, "encoding_format", "invalid_value"),
    ]
    for path, body, param, code in cases:
        response = api.post(path, json=body, headers=llm_headers)
        assert response.status_code == 400, (path, body, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error" and error["param"] == param, (body, error)
        assert error["code"] == code, (body, error)


def test_v1_responses_carry_the_overhead_header(api, stub_model, llm_headers, live):
    live()
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "x"}]}
    response = api.post("/v1/chat/completions", json=body, headers=llm_headers)
    assert response.status_code == 200
    assert float(response.headers["x-daarion-overhead-ms"]) >= 0
    streamed = api.post("/v1/chat/completions", json={**body, "stream": True}, headers=llm_headers)
    assert "x-daarion-overhead-ms" in streamed.headers
    assert streamed.text.rstrip().endswith("data: [DONE]")


def test_a_provider_edited_while_a_call_is_in_flight_drops_no_call(api, fake_provider, make_model, llm_headers, fake_stats, live):
    # The edit gives the provider a new connection pool in the server; the old one must wait
    # for the call still running on it instead of cutting that call's connection.
    import concurrent.futures

    from apps.llm import services as llm_services

    make_model("slowpoke", fake_provider, "slow:1.5")
    make_model("quick", fake_provider, "echo")
    live()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(api.post, "/internal/llm/proxy", json=_proxy_body(model="slowpoke"), headers=llm_headers, timeout=30)
        assert wait_for(lambda: fake_stats()["active"] >= 1), "the slow call reached the upstream"
        llm_services.provider_update(provider=fake_provider, extra_headers={"X-Test": "edited"})

        def new_pool_in_use() -> bool:
            answer = api.post("/internal/llm/proxy", json=_proxy_body(model="quick"), headers=llm_headers)
            return answer.status_code == 200 and fake_stats()["last"]["headers"].get("x-test") == "edited"

        assert wait_for(new_pool_in_use), "the server did not pick up the provider edit"
        response = slow.result(timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["content"].startswith("echo")
