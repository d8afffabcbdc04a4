"""Fixtures of the management API tests: token and staff-session clients over real HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

PREFIX = "/api/registry"
OBJECT_SCHEMA = {"type": "object", "properties": {"microdao_id": {"type": "string"}}, "required": ["microdao_id"]}


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "condition") -> Any:
    """Polls until predicate() is truthy; fails after the deadline (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


class RegistryClient:
    """httpx client bound to /api/registry with one kind of credentials."""

    def __init__(self, client: httpx.Client, headers: dict[str, str] | None = None, csrf: bool = False, label: str = "") -> None:
        self.client, self.headers, self.csrf, self.label = client, headers or {}, csrf, label

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if self.csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers["X-CSRFToken"] = self.client.cookies.get("csrftoken", "")
        url = path if path.startswith(("/api/", "/internal/", "/admin/")) else f"{PREFIX}{path}"
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def token_client(api, make_token, bearer) -> RegistryClient:
    return RegistryClient(api, bearer(make_token(scopes=["registry"], name="ci-deployer")), label="token")


@pytest.fixture
def read_client(api, make_token, bearer) -> RegistryClient:
    return RegistryClient(api, bearer(make_token(scopes=["registry:read"], name="dashboard")), label="read")


def admin_login(base_url: str, username: str, password: str) -> httpx.Client:
    """Logs in through the real admin login form; the client keeps the session cookie."""
    client = httpx.Client(base_url=base_url, timeout=30)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
        headers={"Referer": f"{base_url}/admin/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    return client


@pytest.fixture
def staff_user(transactional_db):
    from django.contrib.auth.models import User

    return User.objects.create_user("ops", password="ops-Passw0rd!", is_staff=True)


@pytest.fixture
def session_client(api, asgi_server, staff_user) -> Iterator[RegistryClient]:
    client = admin_login(asgi_server.url, "ops", "ops-Passw0rd!")
    yield RegistryClient(client, csrf=True, label="session")
    client.close()


@pytest.fixture(params=["token", "session"])
def client(request, api) -> RegistryClient:
    """Each CRUD test runs once with a service token and once with a staff session.

    (`api` is named here so pytest-django sees `transactional_db` before any `db` fixture.)
    """
    return request.getfixturevalue(f"{request.param}_client")


@pytest.fixture
def stub_provider(db):
    from apps.llm.services import provider_create

    return provider_create(name="stub", kind="stub")
