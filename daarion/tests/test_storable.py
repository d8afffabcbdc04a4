"""The storable rules match PostgreSQL: what they refuse, jsonb refuses too (so a write would
have been a 500), and what they pass is stored and read back unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DatabaseError, connection, transaction
from pydantic import TypeAdapter, ValidationError

from daarion.infra.storable import (
    StorableObject,
    StorableText,
    UtcDatetime,
    clean_json,
    clean_text,
    json_problem,
    text_problem,
    to_utc,
)


def _jsonb_round_trip(value: object) -> object:
    """`value` through a real jsonb cast, the way Django's JSONField sends it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb", [json.dumps(value)])
        stored = cursor.fetchone()[0]
    return json.loads(stored) if isinstance(stored, str) else stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"text": "a\x00b"}, "content.text", "NUL"),
        ({"t\x00": "ab"}, "content.'t\\x00'", "key must not contain NUL"),
        ({"items": ["ok", "lone \ud800"]}, "content.items.1", "surrogates"),
        ({"n": float("nan")}, "content.n", "finite"),
        ({"n": float("inf")}, "content.n", "finite"),
    ],
)
def test_what_it_refuses_postgres_refuses(value, path, message):
    found = json_problem(value, "content")
    assert found is not None and found[0] == path and message in found[1], found
    with pytest.raises((DatabaseError, ValueError)):
        _jsonb_round_trip(value)


@pytest.mark.django_db
def test_what_it_passes_is_stored_unchanged():
    value = {"text": "ünïcode ✓ 🚀", "n": 1.5, "list": [1, None, True, {"deep": "x"}], "empty": {}}
    assert json_problem(value, "content") is None
    assert _jsonb_round_trip(value) == value


def test_nesting_is_bounded():
    deep: object = "leaf"
    for _ in range(70):
        deep = [deep]
    found = json_problem(deep, "content")
    assert found is not None and "nested deeper than 64" in found[1]
    assert json_problem([[["fine"]]], "content") is None


def test_text_problem():
    assert text_problem("plain") is None
    assert "NUL" in (text_problem("a\x00") or "")
    assert "surrogates" in (text_problem("\udfff") or "")


def test_to_utc_converts_and_refuses_instants_outside_years_1_to_9999():
    naive = datetime(2026, 1, 1, 12, 0)
    assert to_utc(naive) == naive.replace(tzinfo=UTC)
    east = datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=19)))
    assert to_utc(east) == datetime(2025, 12, 31, 5, 0, tzinfo=UTC)
    for edge in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))),
    ):
        with pytest.raises(ValueError, match="years 1-9999"):
            to_utc(edge)


def test_the_schema_types_report_the_rule():
    assert TypeAdapter(StorableText).validate_python("ok") == "ok"
    with pytest.raises(ValidationError, match="NUL"):
        TypeAdapter(StorableText).validate_python("a\x00")
    with pytest.raises(ValidationError, match="a.b must be a finite number"):
        TypeAdapter(StorableObject).validate_python({"a": {"b": float("inf")}})
    with pytest.raises(ValidationError, match="years 1-9999"):
        TypeAdapter(UtcDatetime).validate_python("0001-01-01T00:00:00+05:00")


def _text_round_trip(value: str) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT %s::text", [value])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_what_the_cleaners_make_of_what_postgres_refuses_it_stores():
    text = clean_text("a\x00b \ud800 c", 6)
    assert text == "ab ? c" and text_problem(text) is None
    assert _text_round_trip(text) == text
    assert (clean_text(None), clean_text(42), clean_text("long", 2), clean_text("fine")) == ("", "42", "lo", "fine")

    value = {"t\x00": ["x\x00", "\udc80", float("nan"), float("inf"), {"n": -float("inf")}], "ok": 1.5, "big": 10**30}
    cleaned = clean_json(value)
    assert cleaned == {"t": ["x", "?", None, None, {"n": None}], "ok": 1.5, "big": 10**30}
    assert json_problem(cleaned, "content") is None
    assert _jsonb_round_trip(cleaned) == cleaned
    fine = {"text": "ünïcode ✓ 🚀", "list": [1, None, True, {"deep": "x"}]}
    assert clean_json(fine) == fine
