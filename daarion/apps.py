from django.apps import AppConfig


class DaarionConfig(AppConfig):
    """The project wiring as an app: service tokens, shared commands, the embedded stack."""

    name = "daarion"
    verbose_name = "Service access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from daarion.audit import track_configured_models

        track_configured_models()
