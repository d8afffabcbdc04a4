"""Ninja routers of the LLM proxy: /internal/llm and the OpenAI-compatible /v1."""

from ninja import Router

from daarion.auth import ServiceTokenAuth

router = Router(tags=["llm"], auth=ServiceTokenAuth("llm"))
openai_router = Router(tags=["openai"], auth=ServiceTokenAuth("llm"))
