"""Key rotation re-seals stored secrets under the new primary key, and they still open."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection, models
from django.db.models import F, TextField
from django.db.models.functions import Cast
from django.test.utils import isolate_apps

from daarion.infra import crypto
from daarion.infra.crypto import EncryptedTextField, generate_key_spec, key_id_of
from apps.access.services import encryption_rotate


@pytest.fixture
def key_rings(settings):
    old, new = generate_key_spec("old"), generate_key_spec("new")
    settings.ENCRYPTION_KEYS = old
    crypto.reset_key_ring()
    yield {"old": old, "new": new}
    crypto.reset_key_ring()


@pytest.fixture
def vault_model(transactional_db):
    # A throwaway model in an isolated registry, so the global app registry stays untouched.
    with isolate_apps("daarion"):

        class Vault(models.Model):
            secret = EncryptedTextField(blank=True, default="")

            class Meta:
                app_label = "daarion"
                db_table = "test_rotation_vault"

    with connection.schema_editor() as editor:
        editor.create_model(Vault)
    yield Vault
    with connection.schema_editor() as editor:
        editor.delete_model(Vault)


def _stored(model) -> list[str]:
    return list(model.objects.annotate(raw=Cast(F("secret"), TextField())).order_by("pk").values_list("raw", flat=True))


def test_rotation_reseals_under_the_new_key(key_rings, vault_model, settings):
    vault_model.objects.create(secret="alpha-key")
    vault_model.objects.create(secret="beta-key")
    vault_model.objects.create(secret="")  # unset secrets stay unset
    assert [key_id_of(v) for v in _stored(vault_model) if v] == ["old", "old"]

    settings.ENCRYPTION_KEYS = key_rings["new"] + "," + key_rings["old"]
    crypto.reset_key_ring()
    assert encryption_rotate(model_list=[vault_model], dry_run=True) == {"daarion.Vault.secret": 2}
    assert [key_id_of(v) for v in _stored(vault_model) if v] == ["old", "old"], "dry run writes nothing"

    assert encryption_rotate(model_list=[vault_model]) == {"daarion.Vault.secret": 2}
    assert [key_id_of(v) for v in _stored(vault_model) if v] == ["new", "new"]
    assert encryption_rotate(model_list=[vault_model]) == {}, "a second run finds nothing to do"

    # The old key can now be dropped: everything opens with the new one alone.
    settings.ENCRYPTION_KEYS = key_rings["new"]
    crypto.reset_key_ring()
    assert sorted(vault_model.objects.values_list("secret", flat=True)) == ["", "alpha-key", "beta-key"]


def test_secret_is_not_stored_in_clear(key_rings, vault_model):
    vault_model.objects.create(secret="sk-very-secret")
    assert all("sk-very-secret" not in value for value in _stored(vault_model))


def test_rotate_command_reports_counts(key_rings, db, capsys):
    call_command("rotate_encryption_key", "--dry-run")
    assert "under key 'old'" in capsys.readouterr().out
