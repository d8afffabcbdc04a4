"""model_update: only what changed is saved (and said to have changed), the row is checked
whole before the save, unknown fields are refused."""

from __future__ import annotations

import pytest

from apps.llm import services as llm
from apps.llm.models import Provider
from daarion.infra.errors import ValidationFailed
from daarion.infra.model_update import model_update
from apps.access.models import ChangeRecord, ServiceToken
from apps.access.services import service_token_create


@pytest.mark.django_db
def test_only_changed_columns_are_saved():
    token = service_token_create(name="mu", scopes=["llm"]).token
    # Another writer changes a column this instance does not know about...
    ServiceToken.objects.filter(pk=token.pk).update(enabled=False)
    assert model_update(instance=token, fields=("scopes", "enabled"), data={"scopes": ["llm", "tools"]}) is True
    stored = ServiceToken.objects.get(pk=token.pk)
    # ...and keeps it: only `scopes` was written.
    assert stored.scopes == ["llm", "tools"] and stored.enabled is False


@pytest.mark.django_db
def test_no_change_saves_nothing():
    token = service_token_create(name="mu-same", scopes=["llm"]).token
    records = ChangeRecord.objects.count()
    assert model_update(instance=token, fields=("scopes",), data={"scopes": ["llm"]}) is False
    assert ChangeRecord.objects.count() == records


@pytest.mark.django_db
def test_the_row_is_checked_before_the_save_and_unknown_fields_refused():
    token = service_token_create(name="mu-check", scopes=["llm"]).token
    with pytest.raises(ValidationFailed) as raised:
        model_update(instance=token, fields=("name",), data={"name": "x" * 101})
    assert list(raised.value.by_path()) == ["name"]
    assert ServiceToken.objects.get(pk=token.pk).name == "mu-check"
    with pytest.raises(ValidationFailed, match="cannot change"):
        model_update(instance=token, fields=("scopes",), data={"secret_hash": "0" * 64})


@pytest.mark.django_db
def test_a_normalised_value_equal_to_the_stored_one_is_no_change():
    provider = llm.provider_create(name="mu-openai", kind="openai", base_url="https://api.example.com/v1")
    updated_at = provider.updated_at
    # The validation strips the trailing slash: the same URL as stored, so nothing changes.
    assert (
        model_update(
            instance=provider,
            fields=("base_url",),
            data={"base_url": "https://api.example.com/v1/"},
            validate=llm.provider_validate,
        )
        is False
    )
    assert Provider.objects.get(pk=provider.pk).updated_at == updated_at
    # A real change saves the auto_now column with it.
    assert model_update(instance=provider, fields=("enabled",), data={"enabled": False}, validate=llm.provider_validate) is True
    stored = Provider.objects.get(pk=provider.pk)
    assert stored.enabled is False and stored.updated_at > updated_at


@pytest.mark.django_db
def test_the_stamp_is_written_with_a_real_change_only():
    provider = llm.provider_create(name="mu-stamp", kind="openai", base_url="https://api.example.com/v1")
    stamped: list[str] = []

    def stamp(row: Provider) -> None:
        stamped.append(row.base_url)
        row.name = "mu-stamped"  # a column the change did not name, saved with it

    # Equal once normalised: no change, so no stamp.
    assert (
        model_update(
            instance=provider,
            fields=("base_url",),
            data={"base_url": "https://api.example.com/v1/"},
            validate=llm.provider_validate,
            stamp=stamp,
        )
        is False
    )
    assert stamped == [] and Provider.objects.get(pk=provider.pk).name == "mu-stamp"
    assert model_update(
        instance=provider,
        fields=("base_url",),
        data={"base_url": "https://other.example.com/v1"},
        validate=llm.provider_validate,
        stamp=stamp,
    )
    stored = Provider.objects.get(pk=provider.pk)
    assert stamped == ["https://other.example.com/v1"]
    assert (stored.base_url, stored.name) == ("https://other.example.com/v1", "mu-stamped")
