"""The registry management API: Django REST framework over the registries' own services."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"
    verbose_name = "Registry management API"

    def ready(self) -> None:
        # Registers the OpenAPI description of the token authentication.
        from apps.registry import schema  # noqa: F401
