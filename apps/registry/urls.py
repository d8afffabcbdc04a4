"""Routes of /api/registry/: one viewset per registry, apply/export, the OpenAPI schema."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.routers import DefaultRouter

from apps.registry import views


class Router(DefaultRouter):
    """Routes that take the trailing slash or leave it off: Django's APPEND_SLASH can only
    redirect a GET, so a POST, PATCH or DELETE to the bare path was a 500. (DRF's
    `trailing_slash` argument is a yes/no; its routes format this attribute into the regex.)"""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = Router()
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("models", views.LogicalModelViewSet, basename="logical-model")
router.register("rate-limits", views.RateLimitPolicyViewSet, basename="rate-limit")
router.register("tools", views.ToolViewSet, basename="tool")
router.register("mcp-servers", views.McpServerViewSet, basename="mcp-server")
router.register("agents", views.AgentViewSet, basename="agent")
router.register("embedding-models", views.EmbeddingModelViewSet, basename="embedding-model")
router.register("changes", views.ChangeRecordViewSet, basename="change")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="registry-schema"),
    path("apply", views.ApplyView.as_view(), name="registry-apply"),
    path("export", views.ExportView.as_view(), name="registry-export"),
    # Log in / out links of the browsable API (staff; the admin login works as well).
    path("auth/", include("rest_framework.urls")),
    path("docs/", SpectacularRedocView.as_view(url_name="registry-schema"), name="registry-docs"),
    *router.urls,
]
