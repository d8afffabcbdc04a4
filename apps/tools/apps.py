"""App config of toolcore."""

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "apps.tools"
    label = "tools"
    verbose_name = "Toolcore"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        # Registers the executors. Apps register their python tool functions
        # (@tool_function) from their own ready().
        from apps.tools import executors  # noqa: F401
        from apps.tools.checks import check_tool_allowed_agents

        # Tagged database: runs with `check --database` (and migrate), never at plain start-up.
        register(check_tool_allowed_agents, Tags.database)
