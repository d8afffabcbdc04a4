"""The error envelope: every status a caller can meet, never an HTML page or a bare 500."""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.testing import TestClient

from daarion.api import install_error_handlers
from daarion.infra.errors import Conflict, ValidationFailed


def _assert_envelope(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    return error


def test_unknown_internal_route_is_404_json(api):
    _assert_envelope(api.get("/internal/no-such-thing"), 404, "not_found")


def test_unknown_v1_route_is_404_json(api):
    # /v1 answers in OpenAI's error shape (apps/llm/errors.py).
    error = _assert_envelope(api.post("/v1/nothing-here", json={}), 404, "invalid_request_error")
    assert (error["param"], error["code"]) == (None, None)


def test_wrong_method_is_405_json_with_allow(api, make_token, bearer):
    response = api.delete("/internal/whoami", headers=bearer(make_token()))
    error = _assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in error["message"]
    assert response.headers["allow"] == "GET"


def test_body_over_the_limit_is_413(api, make_token, bearer, settings):
    big = b"x" * (settings.MAX_BODY_BYTES + 1)
    response = api.post("/internal/whoami", content=big, headers=bearer(make_token()))
    error = _assert_envelope(response, 413, "payload_too_large")
    assert "limit" in error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/internal/agent-memory/mem-%00",  # a path id reaching a database lookup
        "/internal/agent-memory/jobs/%00",
        "/api/registry/agents/agent:a%00b/",
        "/api/registry/changes/?object_id=%00",  # a query parameter reaching a filter
    ],
)
def test_nul_in_the_url_is_400_not_500(api, make_token, bearer, path):
    token = make_token(scopes=["memory", "registry:read"])
    response = api.get(path, headers=bearer(token))
    error = _assert_envelope(response, 400, "bad_request")
    assert "NUL" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/internal/tools/call", b'{"tool_id": "t", "agent_id": "agent:a", "microdao_id": "m", "args": {"x": NaN}}'),
        (
            "/internal/agent-memory/store",
            b'{"agent_id": "agent:a", "microdao_id": "m", "kind": "kb", "content": {"x": Infinity}}',
        ),
        ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}'),
    ],
)
def test_nan_and_infinity_are_not_json(api, make_token, bearer, path, body):
    # Python's JSON reader takes them; a tool's HTTP target, an upstream or jsonb would not.
    token = make_token(scopes=["tools", "memory", "llm"])
    response = api.post(path, content=body, headers={**bearer(token), "content-type": "application/json"})
    _assert_envelope(response, 400, "invalid_request_error" if path.startswith("/v1/") else "bad_request")


def test_pages_outside_the_apis_keep_django_behaviour(api):
    response = api.get("/admin/", follow_redirects=False)
    assert response.status_code == 302  # to the login page, not an API envelope


# A small API with the project's handlers, to reach the body-validation paths before the
# apps contribute routes of their own.
class _Item(Schema):
    name: str
    count: int


_api = NinjaAPI(urls_namespace="errors-test")
install_error_handlers(_api)


@_api.post("/items")
def _create(request: HttpRequest, payload: _Item) -> dict:
    if payload.name == "taken":
        raise Conflict("item 'taken' exists", details={"name": "taken"})
    if payload.name == "boom":
        raise RuntimeError("secret internal detail")
    return {"ok": True}


client = TestClient(_api)


def test_invalid_body_is_422_with_field_paths():
    response = client.post("/items", json={"name": 5, "count": "many"})
    error = _assert_envelope(response, 422, "validation_error")
    paths = {item["path"] for item in error["details"]}
    assert paths == {"body.name", "body.count"}


def test_missing_body_is_422():
    error = _assert_envelope(client.post("/items"), 422, "validation_error")
    assert error["details"][0]["path"] == "body"


def test_malformed_json_is_400():
    response = client.post("/items", data=b"{not json", content_type="application/json")
    _assert_envelope(response, 400, "bad_request")


def test_domain_error_keeps_its_status_and_details():
    error = _assert_envelope(client.post("/items", json={"name": "taken", "count": 1}), 409, "conflict")
    assert error["details"] == {"name": "taken"}


def test_crash_is_500_envelope_without_internals():
    error = _assert_envelope(client.post("/items", json={"name": "boom", "count": 1}), 500, "internal_error")
    assert "secret internal detail" not in error["message"]


@pytest.mark.parametrize("incoming", ["abc-123", "req.7:x"])
def test_request_id_is_echoed(api, incoming):
    assert api.get("/health", headers={"x-request-id": incoming}).headers["x-request-id"] == incoming


def test_unsafe_request_id_is_replaced(api):
    response = api.get("/health", headers={"x-request-id": "has spaces; and " + "x" * 300})
    assert response.headers["x-request-id"].startswith("req-")


def test_a_refusal_keyed_by_field_lists_its_problems():
    failed = ValidationFailed.on_fields({"fallbacks": "lists a model twice", "__all__": ["no", "never"]})
    assert failed.details == [
        {"path": "fallbacks", "message": "lists a model twice"},
        {"path": "", "message": "no"},
        {"path": "", "message": "never"},
    ]
    assert failed.message == "fallbacks: lists a model twice; no; never"
    assert failed.by_path() == {"fallbacks": ["lists a model twice"], "": ["no", "never"]}
    assert failed.messages == ["lists a model twice", "no", "never"]
    assert (failed.status, failed.type) == (422, "validation_error")


def test_within_re_paths_a_refusal_for_the_enclosing_document():
    failed = ValidationFailed.on_fields({"tool_id": "taken", "target": "not a URL"})
    moved = failed.within("tools[1]", {"tool_id": "id"})
    assert moved.details == [{"path": "tools[1].id", "message": "taken"}, {"path": "tools[1].target", "message": "not a URL"}]
    assert moved.message == "tools[1].id: taken; tools[1].target: not a URL"
    # Nothing to rename and no prefix: the same refusal.
    assert failed.within(aliases={"other": "x"}) is failed
    # A message of its own keeps its words, the prefix in front.
    worded = ValidationFailed(
        "secret 'k': must be a string", type="bad_secret", details=[{"path": "secrets.k", "message": "must be a string"}]
    )
    moved = worded.within("agents[0]")
    assert moved.message == "agents[0]: secret 'k': must be a string" and moved.type == "bad_secret"
    assert moved.details == [{"path": "agents[0].secrets.k", "message": "must be a string"}]
