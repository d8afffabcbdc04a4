"""Reads of the access tables: service tokens and the change log."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db.models import Q, QuerySet

from apps.access.models import ChangeRecord, ServiceToken
from apps.access.services import hash_token


def change_records_for(
    *, object_type: str, object_id: str, related: Iterable[tuple[str, str, str]] = (), limit: int = 200
) -> QuerySet[ChangeRecord]:
    """The change log of one object, newest first: every door's writes (admin, API, import, CLI).

    `related`: (object_type, object_repr prefix, pattern of the rest) of rows that belong to it
    and are edited with it (a model's deployments, an agent's secrets), which the log keeps
    under their own ids.
    """
    match = Q(object_type=object_type, object_id=str(object_id))
    for related_type, prefix, rest in related:
        match |= Q(object_type=related_type, object_repr__regex=f"^{re.escape(prefix)}{rest}$")
    return ChangeRecord.objects.filter(match).order_by("-created_at", "-id")[:limit]


def service_token_usable(raw: str) -> bool:
    """Whether `raw` is the secret of an enabled service token."""
    return ServiceToken.objects.filter(secret_hash=hash_token(raw), enabled=True).exists()


def service_tokens_named(name: str) -> QuerySet[ServiceToken]:
    return ServiceToken.objects.filter(name=name)
