"""The change log records every registry change with its actor, door and diff."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.access.audit import acting_as
from apps.access.models import ChangeRecord, ServiceToken
from apps.access.services import service_token_create, service_token_delete, service_token_update


def _records(name: str) -> list[ChangeRecord]:
    token = ServiceToken.objects.filter(name=name).first()
    object_id = str(token.pk) if token else None
    query = ChangeRecord.objects.filter(object_type="daarion.ServiceToken")
    if object_id:
        query = query.filter(object_id=object_id)
    return list(query.order_by("id"))


def test_create_update_delete_are_recorded_with_the_actor(db):
    with acting_as("token:ci-pipeline", "api"):
        issued = service_token_create(name="audited", scopes=["llm"])
    service_token_update(token=issued.token, scopes=["llm", "tools"])
    pk = issued.token.pk
    service_token_delete(token=issued.token)

    records = list(ChangeRecord.objects.filter(object_type="daarion.ServiceToken", object_id=str(pk)).order_by("id"))
    assert [r.action for r in records] == ["create", "update", "delete"]
    created, updated, deleted = records
    assert (created.actor, created.source) == ("token:ci-pipeline", "api")
    assert created.changes["name"] == [None, "audited"]
    assert updated.source == "system" and updated.actor.startswith("system:")
    assert updated.changes == {"scopes": [["llm"], ["llm", "tools"]]}
    assert deleted.changes["name"] == ["audited", None]


def test_credentials_never_enter_the_log(db):
    issued = service_token_create(name="secretive", scopes=["llm"])
    for record in ChangeRecord.objects.all():
        text = str(record.changes)
        assert issued.raw not in text
        assert issued.token.secret_hash not in text
        assert "secret_hash" not in record.changes


def test_a_save_that_changes_nothing_writes_no_record(db):
    issued = service_token_create(name="quiet", scopes=["llm"])
    before = ChangeRecord.objects.count()
    service_token_update(token=issued.token, scopes=["llm"])
    assert ChangeRecord.objects.count() == before


@pytest.mark.django_db
def test_admin_changes_name_the_staff_user(make_agents):
    make_agents("agent:sofia")
    user = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw-123456789")
    client = Client()
    client.force_login(user)
    response = client.post(
        "/admin/daarion/servicetoken/add/",
        {"name": "from-admin", "scopes": ["memory"], "agents": "agent:sofia", "enabled": "on"},
    )
    assert response.status_code == 302, response.content[:500]
    token = ServiceToken.objects.get(name="from-admin")
    assert token.agents == ["agent:sofia"]
    record = ChangeRecord.objects.get(object_type="daarion.ServiceToken", object_id=str(token.pk), action="create")
    assert (record.actor, record.source) == ("user:ops", "admin")


@pytest.mark.django_db
def test_change_log_is_read_only_in_admin():
    user = get_user_model().objects.create_superuser("ops2", "ops2@example.org", "pw-123456789")
    client = Client()
    client.force_login(user)
    assert client.get("/admin/daarion/changerecord/").status_code == 200
    assert client.get("/admin/daarion/changerecord/add/").status_code == 403
