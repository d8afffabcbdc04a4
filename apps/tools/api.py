"""Ninja router of toolcore: /internal/tools."""

from ninja import Router

from daarion.auth import ServiceTokenAuth

router = Router(tags=["tools"], auth=ServiceTokenAuth("tools"))
