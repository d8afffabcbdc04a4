"""Service-token authentication over real HTTP: every way a token can be refused."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.access.models import ServiceToken
from apps.access.services import hash_token, service_token_update


def _wait_for_status(api, url: str, headers: dict, status: int, timeout: float = 5.0):
    """Polls until the server answers `status` (config changes propagate within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(url, headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_whoami_describes_the_calling_token(api, make_token, bearer):
    raw = make_token(scopes=["llm", "memory"], agents=["agent:sofia"], name="runtime")
    response = api.get("/internal/whoami", headers=bearer(raw))
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "runtime"
    assert body["scopes"] == ["llm", "memory"]
    assert body["agents"] == ["agent:sofia"]
    assert raw.startswith(body["prefix"])
    assert response.headers["x-request-id"]


def test_missing_token_is_401_in_the_envelope(api):
    response = api.get("/internal/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == "unauthorized"
    assert "Authorization" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b"])
def test_malformed_authorization_is_401(api, header):
    response = api.get("/internal/whoami", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"


def test_wrong_token_is_401(api, make_token, bearer):
    raw = make_token()
    response = api.get("/internal/whoami", headers=bearer(raw[:-2] + "xx"))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "unknown service token"


def test_expired_token_is_401(api, make_token, bearer):
    raw = make_token(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.get("/internal/whoami", headers=bearer(raw))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "token_expired"


def test_disabled_token_is_refused_within_a_second_of_the_change(api, make_token, bearer):
    raw = make_token()
    assert api.get("/internal/whoami", headers=bearer(raw)).status_code == 200
    token = ServiceToken.objects.get(secret_hash=hash_token(raw))
    service_token_update(token=token, enabled=False)
    response = _wait_for_status(api, "/internal/whoami", bearer(raw), 401)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "token_disabled"


def test_deleted_token_stops_working(api, make_token, bearer):
    from apps.access.services import service_token_delete

    raw = make_token()
    assert api.get("/internal/whoami", headers=bearer(raw)).status_code == 200
    service_token_delete(token=ServiceToken.objects.get(secret_hash=hash_token(raw)))
    assert _wait_for_status(api, "/internal/whoami", bearer(raw), 401).status_code == 401


def test_wrong_scope_is_403(api, make_token, bearer):
    raw = make_token(scopes=["memory"])
    response = api.get("/internal/whoami", params={"scope": "llm"}, headers=bearer(raw))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "scope_not_allowed"
    assert error["details"] == {"required_scope": "llm", "token_scopes": ["memory"]}


def test_token_bound_to_agents_cannot_act_for_another(api, make_token, bearer):
    raw = make_token(agents=["agent:sofia"])
    ok = api.get("/internal/whoami", params={"agent_id": "agent:sofia"}, headers=bearer(raw))
    assert ok.status_code == 200
    refused = api.get("/internal/whoami", params={"agent_id": "agent:pm"}, headers=bearer(raw))
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "agent_not_allowed"


def test_unbound_token_may_act_for_any_agent(api, make_token, bearer):
    raw = make_token(agents=None)
    response = api.get("/internal/whoami", params={"agent_id": "agent:anyone"}, headers=bearer(raw))
    assert response.status_code == 200


def test_use_is_recorded_in_last_used_at(api, make_token, bearer):
    raw = make_token()
    api.get("/internal/whoami", headers=bearer(raw))
    token = ServiceToken.objects.get(secret_hash=hash_token(raw))
    deadline = time.monotonic() + 5
    while token.last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.1)
        token.refresh_from_db()
    assert token.last_used_at is not None


def test_token_is_stored_hashed_never_in_clear(make_token):
    raw = make_token(name="hashed")
    token = ServiceToken.objects.get(name="hashed")
    assert token.secret_hash == hash_token(raw)
    assert raw not in {str(v) for v in ServiceToken.objects.filter(name="hashed").values_list().get()}


def test_create_service_token_command_prints_a_working_token(api, bearer, capsys, make_agents):
    make_agents("agent:pm")
    call_command("create_service_token", "cli-made", "--scopes", "tools", "--agents", "agent:pm")
    raw = capsys.readouterr().out.strip()
    response = api.get("/internal/whoami", headers=bearer(raw))
    assert response.status_code == 200
    assert response.json() == {
        "name": "cli-made",
        "prefix": raw[: len(response.json()["prefix"])],
        "scopes": ["tools"],
        "agents": ["agent:pm"],
        "expires_at": None,
    }


def test_create_service_token_command_refuses_bad_input(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_service_token", "x", "--scopes", "llm", "--expires-days", "0")
    call_command("create_service_token", "dup", "--scopes", "llm")
    with pytest.raises(CommandError, match="name"):
        call_command("create_service_token", "dup", "--scopes", "llm")
    assert ServiceToken.objects.filter(name="dup").count() == 1
