"""The one way an update service writes a row (HackSoft's `model_update`): set the fields
asked for, check the whole row, save only what changed, and say whether anything did."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from django.db import models

from daarion.infra.errors import ValidationFailed, validate_model

M = TypeVar("M", bound=models.Model)


def model_update(
    *,
    instance: M,
    fields: Collection[str],
    data: Mapping[str, Any],
    validate: Callable[[M], None] = validate_model,
    stamp: Callable[[M], None] | None = None,
) -> bool:
    """Sets each field of `data` (all of them among `fields`, else 422 with a detail per other
    field) on `instance`. When a value differs, runs `validate` on the whole row (it may
    normalise values) and saves only the columns that now differ from before, `auto_now` ones
    with them; `stamp` sets what a real change also writes (a version, a timestamp the model
    does not keep itself), in the same save. Returns whether a column changed: a write that
    changes nothing saves nothing, so callers bump versions and caches only on a real change.
    """
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValidationFailed(
            f"cannot change: {', '.join(unknown)}",
            details=[{"path": name, "message": "unknown or read-only field"} for name in unknown],
        )
    before = _columns(instance)
    touched = False
    for name, value in data.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            touched = True
    if not touched:
        return False
    validate(instance)
    after = _columns(instance)
    changed = [name for name, value in after.items() if before[name] != value]
    if not changed:
        return False
    if stamp is not None:
        stamp(instance)
        changed = [name for name, value in _columns(instance).items() if before[name] != value]
    auto_now = [f.name for f in instance._meta.concrete_fields if getattr(f, "auto_now", False) and f.name not in changed]
    instance.save(update_fields=[*changed, *auto_now])
    return True


def _columns(instance: models.Model) -> dict[str, Any]:
    return {f.name: f.value_from_object(instance) for f in instance._meta.concrete_fields if not f.primary_key}
