from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Toolcore may not import this app. It asks the directory whether a tool's
        # allowed_agents name real agents, and its REST and MCP doors ask for the agent
        # secrets a tool declares (agent_secret_headers); this app answers both.
        from apps.agents.selectors import aagent_microdao, aagent_secrets, unknown_agent_ids
        from daarion.infra.agent_directory import register_agent_resolver, register_microdao_resolver
        from daarion.infra.agent_secrets import register_agent_secrets_resolver

        register_agent_resolver(unknown_agent_ids)
        register_microdao_resolver(aagent_microdao)
        register_agent_secrets_resolver(aagent_secrets)
        from apps.agents import mcp

        mcp.register()  # agents' characters as prompts on toolcore's /mcp (daarion.infra.mcp_extensions)
