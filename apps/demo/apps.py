from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo seed (`manage.py seed_demo`), the demo projects service (/demo/) and the demo
    tool `followups.create` with its follow-ups."""

    name = "apps.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the demo's python tool functions (followups.create), so a python tool can
        # name them as its target and the python executor can run them.
        from apps.demo import functions  # noqa: F401
