"""Fixed vocabularies of the agents app."""

from django.db import models


class ToolMode(models.TextChoices):
    """How the agent's model is offered tools."""

    NATIVE = "native", "Native tool calling (OpenAI tools)"
    # For models without tool calling: tools are described in the prompt and the model asks
    # for one with a line `TOOL: projects.list {"microdao_id": "microdao:7"}` (the seed's convention).
    TEXT = "text", "Text convention (TOOL: <id> {json})"
