"""Forms of the console: a tool's arguments, generated from its input schema."""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms

ARG_PREFIX = "arg_"
_REQUIRED = re.compile(r"^'(?P<name>[^']+)' is a required property$")


def _field_for(name: str, schema: dict[str, Any], required: bool) -> forms.Field:
    label = f"{name}{' *' if required else ''}"
    kind = schema.get("type")
    help_text = schema.get("description", "")
    # Not required on the form: an empty box is left out of the arguments, and the tool's own
    # schema says what is missing, as it would to an agent.
    common = {"label": label, "required": False, "help_text": help_text}
    if "enum" in schema:
        return forms.ChoiceField(choices=[("", "—"), *((str(v), str(v)) for v in schema["enum"])], **common)
    if kind == "string":
        attrs = {"placeholder": schema.get("format", "")} if schema.get("format") else {}
        return forms.CharField(widget=forms.TextInput(attrs=attrs), strip=False, **common)
    if kind == "integer":
        return forms.IntegerField(**common)
    if kind == "number":
        return forms.FloatField(**common)
    if kind == "boolean":
        return forms.NullBooleanField(**common)
    return forms.JSONField(widget=forms.Textarea(attrs={"rows": 3}), **common)


class ToolTryForm(forms.Form):
    """Who calls (an agent the tool allows, a microDAO) and one field per schema property."""

    agent_id = forms.ChoiceField(label="Call as agent")
    microdao_id = forms.CharField(label="microDAO", initial="microdao:7")

    def __init__(self, *args: Any, input_schema: dict[str, Any] | None, agents: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["agent_id"]).choices = [(a, a) for a in agents]
        schema = input_schema or {}
        required = set(schema.get("required") or [])
        self.arg_names: list[str] = []
        properties = schema.get("properties") or {}
        # Required first, then by name (jsonb keeps no key order of its own).
        for name in sorted(properties, key=lambda n: (n not in required, n)):
            prop = properties[name]
            field = self.fields[ARG_PREFIX + name] = _field_for(name, prop if isinstance(prop, dict) else {}, name in required)
            if isinstance(prop, dict) and "default" in prop:
                field.initial = prop["default"]
            elif name == "microdao_id":
                field.initial = self.fields["microdao_id"].initial  # the usual case: the caller's own microDAO
            self.arg_names.append(name)

    def args(self) -> dict[str, Any]:
        """The arguments as the tool gets them: empty boxes left out."""
        values = {}
        for name in self.arg_names:
            value = self.cleaned_data.get(ARG_PREFIX + name)
            if value is None or value == "":
                continue
            values[name] = value
        return values

    def add_tool_errors(self, errors: list[dict[str, str]]) -> None:
        """The tool's validation errors ({path, message}) on the fields they are about."""
        for error in errors:
            path, message = error.get("path", "$"), error.get("message", "")
            name = path[2:].split(".")[0].split("[")[0] if path.startswith("$.") else ""
            missing = _REQUIRED.match(message) if path == "$" else None
            if missing:
                name = missing["name"]
            field = ARG_PREFIX + name
            on_field = field in self.fields
            self.add_error(field if on_field else None, message if on_field else f"{path}: {message}")
