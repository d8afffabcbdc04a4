"""What PostgreSQL can store: checked before a write so bad input is a 422 and never a 500, or
cleaned where there is nobody to refuse it to.

Text may not hold NUL (PostgreSQL refuses `\\u0000` in text and jsonb), strings may not hold a
lone UTF-16 surrogate (JSON allows `"\\ud800"`, UTF-8 cannot encode it), numbers must be
finite (Python's JSON reader takes `NaN`, `Infinity` and `1e400`; jsonb does not), and an
instant must stay inside Python's datetime range once in UTC: PostgreSQL stores year 0 or
10000 happily, and every later read of that row would then fail.

`text_problem` and `json_problem` check (input a caller sent: refused with a 422);
`clean_text` and `clean_json` clean (what a background drain writes: one value the database
refused would fail the drain's whole batch on every run, and every later record would wait).

It lives in `daarion` because every app that writes input to PostgreSQL uses it (memory, llm,
agents, toolcore), and apps depend on `daarion`, not on each other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from django.db import DataError, IntegrityError, transaction
from pydantic import AfterValidator

logger = logging.getLogger(__name__)

_MAX_DEPTH = 64


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone UTF-16 surrogates"
    return None


def json_problem(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """(path, message) of the first part of a JSON value that jsonb cannot store, or None."""
    if depth > _MAX_DEPTH:
        return path, f"is nested deeper than {_MAX_DEPTH} levels"
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) if isinstance(key, str) else None
            if problem:
                return f"{path}.{key!r}", f"key {problem}"
            found = json_problem(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = json_problem(item, f"{path}.{i}", depth + 1)
            if found:
                return found
    return None


def to_utc(value: datetime) -> datetime:
    """`value` in UTC (a naive one is taken as UTC); ValueError when UTC leaves years 1-9999."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the supported range once converted to UTC (years 1-9999)") from None


def clean_text(value: Any, max_length: int | None = None) -> str:
    """`value` as text PostgreSQL stores: None as "", NUL removed, lone surrogates as "?", cut
    to `max_length` (a column's) when given."""
    text = "" if value is None else str(value)
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:max_length] if max_length else text


def clean_json(value: Any) -> Any:
    """`value` as jsonb stores it: strings and keys through clean_text, non-finite numbers as
    null. Nesting is not bounded here: a value too deep raises RecursionError."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def _storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _storable_json(value: Any) -> Any:
    found = json_problem(value, "")
    if found:
        path, message = found
        raise ValueError(f"{path.lstrip('.') or 'value'} {message}")
    return value


# Field types for request schemas: the same rules, reported by Ninja as 422 with the field path.
StorableText = Annotated[str, AfterValidator(_storable_text)]
StorableObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]


# What the database raises for a batch it refuses for what it holds (a value, a constraint);
# an outage raises OperationalError instead, and the batch must then wait for the next drain.
REFUSED_BY_DATABASE = (DataError, IntegrityError, ValueError)

R = TypeVar("R")


def insert_batch(rows: Sequence[R], insert: Callable[[Sequence[R]], object], *, what: str, describe: Callable[[R], str]) -> int:
    """Stores `rows` with `insert` in one go; returns how many are stored.

    For background drains: should the database refuse the batch for what it holds (a constraint
    the cleaning above does not know), the rows go one by one and only a refused row is dropped,
    logged with `describe(row)`, so one bad record cannot hold up every record behind it. Each
    try runs in a savepoint: a caller's transaction stays usable.
    """
    try:
        with transaction.atomic():
            insert(rows)
        return len(rows)
    except REFUSED_BY_DATABASE:
        logger.warning("the database refused a batch of %s; writing them one by one", what, exc_info=True)
    stored = 0
    for row in rows:
        try:
            with transaction.atomic():
                insert([row])
            stored += 1
        except REFUSED_BY_DATABASE:
            logger.exception("dropping one of the %s that the database refuses: %s", what, describe(row))
    return stored
