"""App config of toolcore."""

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "apps.tools"
    label = "tools"
    verbose_name = "Toolcore"

    def ready(self) -> None:
        # Registers the executors and the shipped @tool_function targets, so saving a python
        # tool can check its target against the registrations.
        from apps.tools import executors, functions  # noqa: F401
