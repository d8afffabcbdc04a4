"""App config of toolcore."""

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "apps.tools"
    label = "tools"
    verbose_name = "Toolcore"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        # Registers the executors and the shipped @tool_function targets, so saving a python
        # tool can check its target against the registrations.
        from apps.tools import executors, functions  # noqa: F401
        from apps.tools.checks import check_tool_allowed_agents

        # Tagged database: runs with `check --database` (and migrate), never at plain start-up.
        register(check_tool_allowed_agents, Tags.database)
