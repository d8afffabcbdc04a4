"""Service refusals on admin forms: a ValidationFailed's problems put on the fields they name."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms

from daarion.infra.errors import ValidationFailed


def add_service_errors(form: forms.BaseForm, exc: ValidationFailed, *, fields: Mapping[str, str] | None = None) -> None:
    """Adds each problem of `exc` to the form field its path names (`fields` renames a service's
    field to the form's, as a tool's `allowed_agents` is edited in `agents`); a problem whose
    path names no field of the form is shown above the form."""
    fields = fields or {}
    for path, messages in exc.by_path().items():
        name = fields.get(path, path)
        form.add_error(name if name in form.fields else None, messages)
