"""The one exception the client raises, carrying the service's error envelope."""

from __future__ import annotations

from typing import Any


class DaarionAPIError(Exception):
    """An error answer (`{"error": {"type", "message", "details"}}`), a transport failure
    (`type="transport_error"`, status 0) or an `error` chunk in a stream (`type` from it)."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        details: Any = None,
        *,
        request_id: str | None = None,
        envelope: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.request_id = request_id
        self.envelope = envelope or {"error": {"type": type, "message": message, "details": details}}

    @classmethod
    def from_response(cls, status: int, body: bytes, request_id: str | None) -> "DaarionAPIError":
        import json

        try:
            envelope = json.loads(body)
            error = envelope["error"]
            return cls(
                status,
                str(error.get("type", "error")),
                str(error.get("message", "")),
                error.get("details"),
                request_id=request_id,
                envelope=envelope,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            text = body[:300].decode("utf-8", "replace")
            return cls(status, "http_error", text or f"HTTP {status}", request_id=request_id)
