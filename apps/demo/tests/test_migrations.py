"""Followup moved from toolcore to the demo app in Django's state only: a database migrated
before the move keeps its table, its rows and its content type (with the permissions on it)."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.demo.models import Followup

BEFORE = [("tools", "0003_mcp_servers"), ("demo", None)]


def _latest() -> list[tuple[str, str]]:
    """Every app's newest migration: back to where the test database was (a later migration
    of either app must not be unapplied by this test)."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _migrate(targets):
    """Migrates the test database to `targets`; the models of every app as they are then."""
    return MigrationExecutor(connection).migrate(targets).apps


@pytest.mark.django_db
def test_moving_followup_keeps_the_rows_of_a_database_migrated_before_the_move():
    # Rolled back with the test's transaction; neither direction touches the schema.
    before = _migrate(BEFORE)
    with pytest.raises(LookupError):
        before.get_model("demo", "Followup")
    old = before.get_model("tools", "Followup")
    kept = old.objects.create(
        agent_id="agent:sofia", microdao_id="microdao:7", title="Kept", due_date=datetime.date(2026, 12, 24)
    )
    content_type = before.get_model("contenttypes", "ContentType")
    assert content_type.objects.filter(app_label="tools", model="followup").exists()
    assert not content_type.objects.filter(app_label="demo", model="followup").exists()

    after = _migrate(_latest())
    with pytest.raises(LookupError):
        after.get_model("tools", "Followup")
    row = Followup.objects.get(pk=kept.pk)
    assert (row.title, row.agent_id, row.due_date) == ("Kept", "agent:sofia", datetime.date(2026, 12, 24))
    assert Followup._meta.db_table == "tools_followup"
    moved = after.get_model("contenttypes", "ContentType").objects.get(model="followup", app_label="demo")
    assert not after.get_model("contenttypes", "ContentType").objects.filter(app_label="tools", model="followup").exists()
    assert after.get_model("auth", "Permission").objects.filter(content_type=moved).count() == 4
