from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "apps.memory"
    label = "memory"
    verbose_name = "Agent memory"

    def ready(self) -> None:
        from apps.memory import mcp

        mcp.register()  # memory.search / store / forget on toolcore's /mcp (daarion.mcp_extensions)
