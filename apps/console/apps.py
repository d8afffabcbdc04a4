from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: front page, playground and test buttons around the admin."""

    name = "apps.console"
    label = "console"
    default_auto_field = "django.db.models.BigAutoField"
