"""Exact-match list filters named by each view (`filter_fields = {"enabled": bool, ...}`).

A value that does not parse is refused (422 with the parameter as the path) rather than
silently ignored, so a typo in a dashboard query cannot look like "no results".
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

from daarion.infra.errors import ValidationFailed

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        problem = "must be true or false"
    elif kind is int:
        try:
            return int(raw)
        except ValueError:
            problem = "must be an integer"
    else:
        return raw
    raise ValidationFailed(f"query parameter {name}: {problem}", details=[{"path": f"query.{name}", "message": problem}])


class FieldFilter(BaseFilterBackend):
    def filter_queryset(self, request: Request, queryset: QuerySet, view) -> QuerySet:  # noqa: ANN001
        fields: dict[str, tuple[str, type]] = getattr(view, "filter_fields", {})
        for name, (lookup, kind) in fields.items():
            if name in request.query_params:
                queryset = queryset.filter(**{lookup: _parse(name, request.query_params[name], kind)})
        return queryset

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:  # noqa: ANN001
        types = {bool: "boolean", int: "integer", str: "string"}
        return [
            {
                "name": name,
                "required": False,
                "in": "query",
                "description": f"only objects whose {name} equals this",
                "schema": {"type": types[kind]},
            }
            for name, (_lookup, kind) in getattr(view, "filter_fields", {}).items()
        ]
