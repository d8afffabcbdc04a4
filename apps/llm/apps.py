from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "apps.llm"
    label = "llm"
    verbose_name = "LLM proxy"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        from apps.llm.checks import check_rate_limit_policy_agents

        # Tagged database: runs with `check --database` (and migrate), never at plain start-up.
        register(check_rate_limit_policy_agents, Tags.database)

        from apps.llm.selectors import cooldown_metrics, usage_by_token
        from daarion.observability import token_usage
        from daarion.observability.metrics import register_scrape_reader

        token_usage.reader.register(usage_by_token)  # the token admin's "LLM usage" column
        register_scrape_reader("llm", cooldown_metrics)
