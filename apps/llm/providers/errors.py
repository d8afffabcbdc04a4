"""Upstream failures, classified so the router knows whether to retry, move on or give up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ProviderError(Exception):
    """An upstream failure.

    kind: timeout, connection, rate_limited, server, bad_request, auth, malformed.
    """

    RETRYABLE: ClassVar[frozenset[str]] = frozenset({"timeout", "connection", "rate_limited", "server", "malformed"})

    def __init__(self, kind: str, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs; the router's own backoff applies


def error_from_status(status: int, message: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """`headers`: the answer's headers, looked up case-insensitively (`retry-after`)."""
    retry_after = parse_retry_after(headers.get("retry-after") if headers else None)
    if status == 429:
        return ProviderError("rate_limited", message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return ProviderError("auth", message, status=status)
    if status == 408 or status >= 500:
        return ProviderError("server", message, status=status, retry_after=retry_after)
    return ProviderError("bad_request", message, status=status)
