"""Admin "History" from the project's change log instead of Django's own admin log.

Django's LogEntry sees only admin saves; the change log (apps.access.audit) is written by every
door, with the diff. Audited ModelAdmins take this mixin first in their bases.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from apps.access.selectors import change_records_for


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str) if value is not None else "—"


if TYPE_CHECKING:
    # The mixin is only ever mixed into a ModelAdmin: type it as one (a plain base at run time).
    _AdminBase = admin.ModelAdmin[Any]
else:
    _AdminBase = object


class ChangeHistoryMixin(_AdminBase):
    object_history_template = "admin/daarion/change_history.html"
    # (object_type, object_repr prefix with {pk}, regex of the rest) of rows edited with the
    # object (its inlines), e.g. ("llm.Deployment", "{pk}→", ".*"): their records show in its
    # History too.
    history_related: tuple[tuple[str, str, str], ...] = ()

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        related = [(label, template.format(pk=object_id), rest) for label, template, rest in self.history_related]
        records = change_records_for(object_type=self.model._meta.label, object_id=object_id, related=related)
        own = self.model._meta.label
        rows = [
            {
                "record": record,
                "part": "" if record.object_type == own else f"{record.object_type}: {record.object_repr}",
                "changes": [
                    (name, _show(pair[0]), _show(pair[1]))
                    for name, pair in sorted(record.changes.items())
                    if isinstance(pair, list) and len(pair) == 2
                ],
            }
            for record in records
        ]
        context = {**(extra_context or {}), "change_rows": rows}
        return super().history_view(request, object_id, extra_context=context)
