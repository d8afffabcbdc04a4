"""The change log of the registries: who changed which object, when, through which door, what.

Every door (admin, the registry API, import commands) ends in a model save or delete, so the
log is kept at that one place: models named in settings.DAARION_AUDITED_MODELS are tracked by
save/delete receivers that write a ChangeRecord in the same transaction. The edges only say
who is acting (`acting_as(...)`); nothing can change a registry without leaving a record.
"""

from __future__ import annotations

import contextvars
import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from daarion.infra.crypto import EncryptedTextField


@dataclass(frozen=True)
class Actor:
    name: str
    source: str  # admin | api | import | cli | system


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)


@contextmanager
def acting_as(name: str, source: str) -> Iterator[None]:
    token = _actor.set(Actor(name=name, source=source))
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    actor = _actor.get()
    if actor is not None:
        return actor
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return Actor(name=f"system:{user}", source="system")


SECRET_MARK = "(changed)"


def _snapshot(instance: models.Model) -> dict[str, Any]:
    """Field values as JSON; secrets only as set/unset; a model's `audit_exclude` left out."""
    values: dict[str, Any] = {}
    excluded = set(getattr(instance, "audit_exclude", ()))
    for fld in instance._meta.concrete_fields:
        if fld.attname in excluded:
            continue
        value = fld.value_from_object(instance)
        if isinstance(fld, EncryptedTextField):
            values[fld.attname] = bool(value)  # only whether a secret is set
        else:
            values[fld.attname] = json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    return values


def _diff(before: dict[str, Any], after: dict[str, Any], secret_fields: set[str]) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for name, new in after.items():
        old = before.get(name)
        if name in secret_fields:
            # Whether the value changed cannot be told from set/unset alone; the receiver
            # compares ciphertext-independent plaintexts below and marks it.
            continue
        if old != new:
            changes[name] = [old, new]
    return changes


def _on_pre_save(sender: type[models.Model], instance: models.Model, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance._state.adding or instance.pk is None:
        instance._audit_before = None  # type: ignore[attr-defined]
        return
    previous = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = previous  # type: ignore[attr-defined]


def _record(instance: models.Model, action: str, changes: dict[str, Any]) -> None:
    from apps.access.models import ChangeRecord

    actor = current_actor()
    ChangeRecord.objects.create(
        actor=actor.name[:200],
        source=actor.source[:20],
        object_type=instance._meta.label,
        object_id=str(instance.pk)[:200],
        object_repr=str(instance)[:300],
        action=action,
        changes=changes,
    )


def _secret_fields(model: type[models.Model]) -> set[str]:
    return {f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)}


def _on_post_save(sender: type[models.Model], instance: models.Model, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    secrets = _secret_fields(sender)
    after = _snapshot(instance)
    previous = getattr(instance, "_audit_before", None)
    if created or previous is None:
        changes = {k: [None, v] for k, v in after.items() if k not in secrets}
        changes.update({k: [None, SECRET_MARK] for k in secrets if after.get(k)})
        _record(instance, "create", changes)
        return
    changes = _diff(_snapshot(previous), after, secrets)
    for name in secrets:
        if getattr(previous, name) != getattr(instance, name):
            changes[name] = [SECRET_MARK, SECRET_MARK]
    changes.pop("updated_at", None)
    if changes:
        _record(instance, "update", changes)


def _on_post_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    secrets = _secret_fields(sender)
    before = {k: [v, None] for k, v in _snapshot(instance).items() if k not in secrets}
    _record(instance, "delete", before)


def track_configured_models() -> None:
    """Connects the receivers for every model in settings.DAARION_AUDITED_MODELS."""
    for label in settings.DAARION_AUDITED_MODELS:
        try:
            model = apps.get_model(label)
        except LookupError:
            continue  # an app that does not have this model (yet): nothing to track
        uid = f"audit:{label}"
        pre_save.connect(_on_pre_save, sender=model, dispatch_uid=uid + ":pre")
        post_save.connect(_on_post_save, sender=model, dispatch_uid=uid + ":post")
        post_delete.connect(_on_post_delete, sender=model, dispatch_uid=uid + ":del")
