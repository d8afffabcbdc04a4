"""Ninja router of the memory orchestrator: /internal/agent-memory."""

from ninja import Router

from daarion.auth import ServiceTokenAuth

router = Router(tags=["memory"], auth=ServiceTokenAuth("memory"))
