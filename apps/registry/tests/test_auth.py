"""Who may call the management API: 401 / 403 in the envelope for every wrong credential."""

from __future__ import annotations

import re

import pytest

from apps.registry.tests.conftest import PREFIX, RegistryClient, admin_login


def _error(response, status: int, type_: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == type_


def test_no_credentials_is_401_with_bearer_challenge(api):
    for method, path in (("GET", "/providers/"), ("POST", "/tools/"), ("GET", "/export"), ("POST", "/apply")):
        response = api.request(method, f"{PREFIX}{path}", json={})
        _error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer dst_not-a-token", "Basic abc", "Bearer"])
def test_bad_tokens_are_401(api, header):
    _error(api.get(f"{PREFIX}/providers/", headers={"Authorization": header}), 401, "unauthorized")


def test_disabled_and_expired_tokens_are_401(api, make_token, bearer):
    from django.utils import timezone

    disabled = make_token(scopes=["registry"], enabled=False)
    expired = make_token(scopes=["registry"], expires_at=timezone.now() - timezone.timedelta(minutes=1))
    _error(api.get(f"{PREFIX}/tools/", headers=bearer(disabled)), 401, "token_disabled")
    _error(api.get(f"{PREFIX}/tools/", headers=bearer(expired)), 401, "token_expired")


def test_other_scopes_are_403(api, make_token, bearer):
    headers = bearer(make_token(scopes=["llm", "tools", "agents"]))
    response = api.get(f"{PREFIX}/providers/", headers=headers)
    _error(response, 403, "scope_not_allowed")
    _error(api.post(f"{PREFIX}/providers/", headers=headers, json={"name": "x", "kind": "stub"}), 403, "scope_not_allowed")


def test_read_token_reads_but_never_writes(read_client, token_client):
    assert token_client.post("/rate-limits/", json={"scope": "default", "rpm": 10}).status_code == 201
    policy_id = token_client.get("/rate-limits/").json()["results"][0]["id"]
    assert read_client.get("/rate-limits/").status_code == 200
    assert read_client.get(f"/rate-limits/{policy_id}/").status_code == 200
    assert read_client.get("/export").status_code == 200
    for response in (
        read_client.post("/rate-limits/", json={"scope": "agent", "subject": "agent:x", "rpm": 1}),
        read_client.patch(f"/rate-limits/{policy_id}/", json={"rpm": 1}),
        read_client.put(f"/rate-limits/{policy_id}/", json={"scope": "default", "rpm": 1}),
        read_client.delete(f"/rate-limits/{policy_id}/"),
        read_client.post("/apply", json={"rate_limits": []}),
    ):
        _error(response, 403, "scope_not_allowed")
    # A dry run changes nothing, so a read token may ask for the plan.
    assert read_client.post("/apply?dry_run=1", json={"rate_limits": []}).status_code == 200
    assert token_client.get(f"/rate-limits/{policy_id}/").json()["rpm"] == 10


def test_non_staff_session_is_403(api, asgi_server, transactional_db):
    from django.contrib.auth.models import User

    User.objects.create_user("viewer", password="viewer-Passw0rd!", is_staff=False)
    # Not staff: the admin login form refuses; log in as staff, then lose staff status.
    User.objects.create_user("former", password="former-Passw0rd!", is_staff=True)
    client = admin_login(asgi_server.url, "former", "former-Passw0rd!")
    User.objects.filter(username="former").update(is_staff=False)
    try:
        _error(client.get(f"{PREFIX}/providers/"), 403, "staff_only")
    finally:
        client.close()


def test_session_writes_need_the_csrf_token(session_client):
    no_csrf = RegistryClient(session_client.client, csrf=False)
    _error(no_csrf.post("/rate-limits/", json={"scope": "default", "rpm": 10}), 403, "forbidden")
    assert session_client.post("/rate-limits/", json={"scope": "default", "rpm": 10}).status_code == 201


def test_unknown_routes_and_methods_are_enveloped(token_client):
    _error(token_client.get("/nothing-here/"), 404, "not_found")
    _error(token_client.get("/providers/no-such-provider/"), 404, "not_found")
    response = token_client.request("DELETE", "/providers/")
    _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_staff_log_in_from_the_browsable_api(api, asgi_server, staff_user):
    import httpx

    with httpx.Client(base_url=asgi_server.url, timeout=30) as browser:
        form = browser.get(f"{PREFIX}/auth/login/?next={PREFIX}/tools/")
        assert form.status_code == 200 and "csrfmiddlewaretoken" in form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        done = browser.post(
            f"{PREFIX}/auth/login/",
            data={"username": "ops", "password": "ops-Passw0rd!", "csrfmiddlewaretoken": token, "next": f"{PREFIX}/tools/"},
        )
        assert done.status_code == 302 and done.headers["location"] == f"{PREFIX}/tools/"
        page = browser.get(f"{PREFIX}/tools/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "Log out" in page.text
