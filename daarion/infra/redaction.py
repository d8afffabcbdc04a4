"""Credentials kept out of text that came from elsewhere.

An upstream (an LLM provider, a tool's HTTP target, an MCP server) may repeat what it was sent
in its error text: a proxy that echoes `Authorization`, a debug page listing headers. That text
is passed on to callers, logged and stored (attempt lists, `tools_toolcall.error`, run rows),
so every credential a call sent is removed from it first, where the call's failure is turned
into our error (only failures pay for it). The credentials are the values the call carried:
a provider's key or the caller's per-call key, a tool's secret headers, an MCP server's headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Shorter values are not credentials worth hiding, and replacing them would garble text.
MIN_SECRET_LENGTH = 8
_SCHEMES = frozenset({"bearer", "basic", "token", "apikey", "api-key", "key"})


def secret_values(values: Iterable[str | None]) -> tuple[str, ...]:
    """The strings to remove for these header values or keys: each value, and a scheme-led
    value's credential alone (`Bearer sk-...` -> also `sk-...`), longest first so a longer
    secret is never left half-replaced by a shorter one inside it."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        value = value.strip()
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in _SCHEMES:
            found.add(rest.strip())
        found.add(value)
    return tuple(sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by "[redacted]"."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_data(value: Any, secrets: tuple[str, ...]) -> Any:
    """A copy of JSON-like `value` (dicts, lists, strings) with `secrets` redacted in every
    string, keys included; `value` itself when there is nothing to redact."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item, secrets) for item in value]
    return value
