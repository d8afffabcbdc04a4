"""Ninja router of the agents: /internal/agents."""

from ninja import Router

from daarion.auth import ServiceTokenAuth

router = Router(tags=["agents"], auth=ServiceTokenAuth("agents"))
