from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "apps.memory"
    label = "memory"
    verbose_name = "Agent memory"

    def ready(self) -> None:
        from apps.memory import mcp

        mcp.register()  # memory.search / store / forget on toolcore's /mcp (daarion.infra.mcp_extensions)

        from apps.memory.selectors import backlog_metrics
        from daarion.observability.metrics import register_scrape_reader

        register_scrape_reader("memory", backlog_metrics)
