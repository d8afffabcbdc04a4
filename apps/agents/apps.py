from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Toolcore may not import this app; it asks the directory whether a tool's
        # allowed_agents name real agents, and this app answers.
        from apps.agents.selectors import unknown_agent_ids
        from daarion.agent_directory import register_agent_resolver

        register_agent_resolver(unknown_agent_ids)
