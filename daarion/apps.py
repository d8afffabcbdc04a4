from django.apps import AppConfig


class DaarionConfig(AppConfig):
    """The project wiring as an app: service tokens, shared commands, the embedded stack."""

    name = "daarion"
    verbose_name = "Service access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        from apps.access.audit import track_configured_models
        from apps.access.checks import check_service_token_agents

        track_configured_models()
        _observability()
        # Tagged database: runs with `check --database` (and migrate), never at plain start-up.
        register(check_service_token_agents, Tags.database)


def _observability() -> None:
    """Tracing (when configured) and the Celery signals behind worker heartbeats, task metrics
    and trace propagation into tasks (daarion/observability/)."""
    import sys

    from daarion.observability import celery_signals, tracing

    argv = " ".join(sys.argv[:3])
    tracing.configure(service_name="daarion-worker" if "celery" in argv else "daarion-web")
    celery_signals.connect()
