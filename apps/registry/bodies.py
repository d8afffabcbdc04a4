"""Chunked request bodies for the management API.

DRF reads a body only when the request has a `Content-Length` (`Request._load_stream`): a body
sent with `Transfer-Encoding: chunked` was parsed as no body at all, so a chunked `apply`
answered 200 with nothing applied and a chunked create reported every field missing. The whole
body is already in memory or spooled by the time a view runs (the ASGI handler reads it first,
bounded by the body limit in daarion/body_limit.py), so its length is simply filled in.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def with_body_length(request: HttpRequest) -> HttpRequest:
    """`request` with CONTENT_LENGTH set from its body when the client sent none."""
    meta = request.META
    if request.method in _BODY_METHODS and not meta.get("CONTENT_LENGTH") and not meta.get("HTTP_CONTENT_LENGTH"):
        meta["CONTENT_LENGTH"] = str(len(request.body))
    return request


class ChunkedBodyMixin:
    """For DRF views: chunked bodies are parsed like any other."""

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        return super().initialize_request(with_body_length(request), *args, **kwargs)  # type: ignore[misc]
