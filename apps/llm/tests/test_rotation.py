"""rotate_encryption_key re-seals stored provider keys under the new primary key."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from apps.llm import services
from apps.llm.models import Provider
from daarion.infra import crypto
from daarion.infra.crypto import generate_key_spec, key_id_of


def _stored_key(provider_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM llm_provider WHERE id = %s", [provider_id])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_rotation_reseals_provider_keys(settings):
    old, new = generate_key_spec("old"), generate_key_spec("new")
    settings.ENCRYPTION_KEYS = old
    crypto.reset_key_ring()
    try:
        provider = services.provider_create(name="oa", kind="openai", api_key="sk-rotate-me-123456")
        assert key_id_of(_stored_key(provider.pk)) == "old"

        settings.ENCRYPTION_KEYS = f"{new},{old}"
        crypto.reset_key_ring()
        out = io.StringIO()
        call_command("rotate_encryption_key", stdout=out)
        assert "llm.Provider.api_key" in out.getvalue()
        assert key_id_of(_stored_key(provider.pk)) == "new"

        settings.ENCRYPTION_KEYS = new  # the old key can go: the value opens with the new one alone
        crypto.reset_key_ring()
        assert Provider.objects.get(pk=provider.pk).api_key == "sk-rotate-me-123456"
    finally:
        crypto.reset_key_ring()
