"""Typed Python client of the DAARION control plane: LLM proxy, agent memory, toolcore, agents.

from daarion_client import DaarionClient, AsyncDaarionClient, DaarionAPIError
"""

from daarion_client.client import AsyncDaarionClient, DaarionClient
from daarion_client.errors import DaarionAPIError

__all__ = ["AsyncDaarionClient", "DaarionAPIError", "DaarionClient"]
