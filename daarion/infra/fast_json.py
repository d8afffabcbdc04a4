"""JSON for values that stay inside the system (Redis buffers, stored responses): orjson,
several times faster than the standard encoder, falling back to it for what orjson refuses.

orjson refuses a lone UTF-16 surrogate, which the standard encoder writes as an escape; such a
value is rare (input is parsed by orjson and refused there) but must never fail a write, so
`dumps` falls back and `loads` reads the escape back the same way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes | str:
    """`value` as JSON; anything JSON does not know (Decimal, datetime) as its str()."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, default=str)


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # a lone surrogate's escape (see dumps), else truly broken
        return json.loads(raw)
