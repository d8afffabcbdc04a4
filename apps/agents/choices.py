"""Fixed vocabularies of the agents app."""

from django.db import models


class ToolMode(models.TextChoices):
    """How the agent's model is offered tools."""

    NATIVE = "native", "Native tool calling (OpenAI tools)"
    # For models without tool calling: tools are described in the prompt and the model asks
    # for one with a line `TOOL: projects.list {"microdao_id": "microdao:7"}` (the seed's convention).
    TEXT = "text", "Text convention (TOOL: <id> {json})"


class RunStatus(models.TextChoices):
    """A run's life: queued -> running -> one of the four ends (an end is final)."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Its executor died (lease ran out) or it outlived the run time limit before ending.
    INTERRUPTED = "interrupted", "Interrupted"

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.QUEUED.value, cls.RUNNING.value)


class RunStrategy(models.TextChoices):
    """What a new message does while another run of the same session is active."""

    REJECT = "reject", "Refuse it (409 run_in_progress)"
    ENQUEUE = "enqueue", "Run it after the active runs, in order"
