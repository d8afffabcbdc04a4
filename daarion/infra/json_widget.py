"""A JSON editing widget for admin: highlighting, formatting and validation as you type.

The editor is vanilla-jsoneditor's prebuilt bundle, served from static/vendor/jsoneditor (no
CDN). Validation as you type asks the server (the console's /admin/console/json/validate)
with the field's `kind`, so the browser checks against the very rules the services apply
(the character schema, JSON Schema 2020-12 for tool contracts) instead of a second copy.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms


class JsonEditorWidget(forms.Textarea):
    template_name = "django/forms/widgets/textarea.html"

    def __init__(self, *, kind: str = "json", attrs: dict[str, Any] | None = None) -> None:
        # The textarea stays the form's field (what is posted); the script shows the editor
        # over it, and without scripts it is a plain box as before.
        super().__init__(attrs={"rows": 12, "class": "json-editor-source", "data-json-kind": kind, **(attrs or {})})

    @property
    def media(self) -> forms.Media:
        return forms.Media(
            css={"all": ["console/json-field.css"]},
            js=[forms.Script("console/json-field.js", type="module")],
        )

    def format_value(self, value: Any) -> str | None:
        # Django's JSONField gives one long line; people read it indented.
        text = super().format_value(value)
        if not text:
            return text
        try:
            return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
        except (TypeError, ValueError):
            return text  # an invalid value sent back with its error: show it as typed
