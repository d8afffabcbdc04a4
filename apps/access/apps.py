from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Service tokens (who may call which door, for which agents) and the change log of the
    registry's rows. The label is "daarion", from when this lived in daarion/: tables,
    migrations and permissions keep their names."""

    name = "apps.access"
    label = "daarion"
    verbose_name = "Service access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        from apps.access.audit import track_configured_models
        from apps.access.checks import check_service_token_agents

        track_configured_models()
        # Tagged database: runs with `check --database` (and migrate), never at plain start-up.
        register(check_service_token_agents, Tags.database)
