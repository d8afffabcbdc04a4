"""Admin sign-in throttling (django-axes, issue #18 item 10): 30 wrong passwords in 7 s, then
the right one, used to get in. Over real HTTP through the admin's own login form."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model


def _attempt(base_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return client.post(
            "/admin/login/?next=/admin/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
            headers={"Referer": f"{base_url}/admin/login/"},
        )


@pytest.mark.django_db(transaction=True)
def test_wrong_passwords_lock_the_account_out_with_a_clear_page(asgi_server) -> None:
    users = get_user_model()
    users.objects.create_superuser("ops", "ops@example.org", "right-password-1")
    users.objects.create_superuser("other", "other@example.org", "right-password-2")
    base = asgi_server.url
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = _attempt(base, "ops", "wrong")
        assert wrong.status_code == 200 and "correct username and password" in wrong.text
    locked = _attempt(base, "ops", "wrong")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.text and "Try again in" in locked.text
    # Locked means locked: the right password is refused too, until the cool-off ends.
    assert _attempt(base, "ops", "right-password-1").status_code == 429
    # Only that account from that address: another one still signs in.
    assert _attempt(base, "other", "right-password-2").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_a_successful_sign_in_resets_the_count(asgi_server) -> None:
    get_user_model().objects.create_superuser("ops2", "ops2@example.org", "right-password-3")
    base = asgi_server.url
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _attempt(base, "ops2", "wrong").status_code == 200
    assert _attempt(base, "ops2", "right-password-3").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _attempt(base, "ops2", "wrong").status_code == 200
    assert _attempt(base, "ops2", "right-password-3").status_code == 302
