"""Each registry over real HTTP: create, read, list (filter, search, pages), update, partial
update, delete — once with a `registry` token and once with a staff session."""

from __future__ import annotations

from typing import Any

import pytest

from apps.registry.tests.conftest import OBJECT_SCHEMA
from apps.access.models import ChangeRecord

# collection, create body, lookup key, PATCH body, PUT body (full), filter query matching it
# (agents before tools: a tool may allow only agents that exist)
CASES: dict[str, dict[str, Any]] = {
    "providers": {
        "create": {"name": "openai-main", "kind": "openai", "api_key": "sk-crud-1", "timeout_seconds": 30},
        "key": "openai-main",
        "patch": {"max_retries": 4},
        "put": {"name": "openai-main", "kind": "openai_compatible", "base_url": "http://llm.internal:8000/v1"},
        "filter": "kind=openai",
    },
    "models": {
        "create": {
            "name": "gpt-x",
            "deployments": [{"provider": "stub", "upstream_model": "gpt-x-2025"}],
            "input_price_per_mtok": "0.4",
            "description": "general model",
        },
        "key": "gpt-x",
        "patch": {"context_window": 128000},
        "put": {"name": "gpt-x", "deployments": [{"provider": "stub", "upstream_model": "gpt-x-2026", "weight": 3}]},
        "filter": "provider=stub",
    },
    # Agents before what names them (an agent policy, a tool's allowed_agents).
    "agents": {
        "create": {
            "id": "agent:sofia",
            "name": "Sofia",
            "microdao_id": "microdao:7",
            "model": "gpt-x",
            "character": {"bio": ["Product lead"]},
        },
        "key": "agent:sofia",
        "patch": {"temperature": 0.3},
        "put": {"id": "agent:sofia", "name": "Sofia Prime", "microdao_id": "microdao:7", "model": "gpt-y"},
        "filter": "microdao_id=microdao:7",
    },
    "rate-limits": {
        "create": {"scope": "agent", "subject": "agent:sofia", "rpm": 60},
        "key": None,  # by id
        "patch": {"tpm": 10000},
        "put": {"scope": "agent", "subject": "agent:sofia", "rpm": 30, "enabled": False},
        "filter": "scope=agent",
    },
    "tools": {
        "create": {
            "id": "projects.list",
            "name": "List projects",
            "input_schema": OBJECT_SCHEMA,
            "executor": "http",
            "target": "http://projects:8000/list",
            "allowed_agents": ["agent:sofia"],
        },
        "key": "projects.list",
        "patch": {"description": "Lists projects", "read_only": True},
        "put": {
            "id": "projects.list",
            "name": "Projects",
            "input_schema": OBJECT_SCHEMA,
            "executor": "python",
            "target": "followups.create",
        },
        "filter": "executor=http",
    },
    "embedding-models": {
        "create": {"name": "hash-512", "backend": "hash", "dimensions": 512},
        "key": "hash-512",
        "patch": {"options": {"note": "wider"}},
        "put": {"name": "hash-512", "backend": "hash", "dimensions": 128},
        "filter": "backend=hash",
    },
}


def _path(collection: str, created: dict[str, Any], key: str | None) -> str:
    return f"/{collection}/{key if key is not None else created['id']}/"


@pytest.mark.parametrize("collection", list(CASES))
def test_crud(client, stub_provider, make_agents, collection):
    case = CASES[collection]
    if collection in ("tools", "rate-limits"):
        make_agents("agent:sofia")  # the agent the tool allows, the agent policy limits
    created = client.post(f"/{collection}/", json=case["create"])
    assert created.status_code == 201, created.text
    body = created.json()
    path = _path(collection, body, case["key"])

    got = client.get(path)
    assert got.status_code == 200 and got.json() == body

    listed = client.get(f"/{collection}/?{case['filter']}")
    assert listed.status_code == 200
    page = listed.json()
    assert {"count", "next", "previous", "results"} <= set(page) and body in page["results"]
    assert client.get(f"/{collection}/?search=no-such-thing-anywhere").json()["count"] == 0

    patched = client.patch(path, json=case["patch"])
    assert patched.status_code == 200, patched.text
    for name, value in case["patch"].items():
        assert patched.json()[name] == value

    put = client.put(path, json=case["put"])
    assert put.status_code == 200, put.text
    for name, value in case["put"].items():
        if name != "deployments":
            assert put.json()[name] == value, name

    deleted = client.delete(path)
    assert deleted.status_code == 204, deleted.text
    missing = client.get(path)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


def test_changes_are_in_the_change_log_under_the_caller(token_client, session_client):
    assert token_client.post("/rate-limits/", json={"scope": "default", "rpm": 100}).status_code == 201
    assert session_client.post("/rate-limits/", json={"scope": "microdao", "subject": "microdao:7", "rpm": 5}).status_code == 201
    actors = set(ChangeRecord.objects.filter(object_type="llm.RateLimitPolicy", action="create").values_list("actor", "source"))
    assert actors == {("token:ci-deployer", "api"), ("user:ops", "api")}


def test_model_deployments_are_replaced_and_pages_work(token_client, stub_provider):
    for index in range(3):
        body = {"name": f"m{index}", "deployments": [{"provider": "stub", "upstream_model": f"u{index}"}]}
        assert token_client.post("/models/", json=body).status_code == 201
    replaced = token_client.patch(
        "/models/m0/",
        json={
            "deployments": [
                {"provider": "stub", "upstream_model": "u0", "weight": 2},
                {"provider": "stub", "upstream_model": "u0-b", "rpm_limit": 10},
            ]
        },
    )
    assert [(d["upstream_model"], d["weight"], d["rpm_limit"]) for d in replaced.json()["deployments"]] == [
        ("u0", 2, None),
        ("u0-b", 1, 10),
    ]
    page = token_client.get("/models/?page_size=2&ordering=-name").json()
    assert page["count"] == 3 and [m["name"] for m in page["results"]] == ["m2", "m1"] and page["next"]
    assert token_client.get("/models/?page=9").status_code == 404


def test_browsable_api_for_staff(session_client, stub_provider):
    page = session_client.get("/providers/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "stub" in page.text
    for collection, case in CASES.items():
        created = session_client.post(f"/{collection}/", json=case["create"]).json()
        html = session_client.get(_path(collection, created, case["key"]), headers={"Accept": "text/html"})
        assert html.status_code == 200, (collection, html.text[:300])
    # The edit forms are filled from the stored object, under the API's names.
    tool_page = session_client.get("/tools/projects.list/", headers={"Accept": "text/html"}).text
    assert "&quot;id&quot;: &quot;projects.list&quot;" in tool_page
    model_page = session_client.get("/models/gpt-x/", headers={"Accept": "text/html"}).text
    assert "&quot;provider&quot;: &quot;stub&quot;" in model_page
    root = session_client.get("/", headers={"Accept": "application/json"})
    assert root.status_code == 200 and "providers" in root.json()


def test_every_method_works_without_the_trailing_slash(token_client):
    """Clients that build URLs without the slash (many do) reach the same views: no redirect,
    which would turn a write into a GET, and no 500."""
    created = token_client.post("/providers", json={"name": "bare", "kind": "stub"}, follow_redirects=False)
    assert created.status_code == 201, created.text
    listed = token_client.get("/providers", follow_redirects=False)
    assert listed.status_code == 200 and "bare" in [p["name"] for p in listed.json()["results"]]
    changed = token_client.patch("/providers/bare", json={"enabled": False}, follow_redirects=False)
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    refused = token_client.patch("/providers/bare", json={"kind": "martian"}, follow_redirects=False)
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "validation_error"
    assert token_client.get("/providers/bare/").json()["enabled"] is False
    assert token_client.delete("/providers/bare", follow_redirects=False).status_code == 204
    assert token_client.get("/providers/bare", follow_redirects=False).status_code == 404
