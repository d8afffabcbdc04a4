"""URL map: the front page, admin (+ its console), the internal API, the OpenAI-compatible API, health
(/mcp is plain ASGI: daarion/asgi.py)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.console.views import front_page
from daarion.api import internal_api, openai_api
from daarion.health import health
from daarion.observability import health as probes
from daarion.observability.admin_views import metrics_page
from daarion.observability.metrics import metrics_view

urlpatterns = [
    path("", front_page, name="front"),
    path("admin/console/", include("apps.console.urls")),
    path("admin/metrics/", admin.site.admin_view(metrics_page), name="admin-metrics"),
    path("admin/", admin.site.urls),
    path("internal/", internal_api.urls),
    path("v1/", openai_api.urls),
    path("api/registry/", include("apps.registry.urls")),
    path("health", health, name="health"),
    path("health/live", probes.live, name="health-live"),
    path("health/ready", probes.ready, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
]
if settings.DAARION_DEMO_SERVICE:
    urlpatterns.append(path("demo/", include("apps.demo.urls")))
