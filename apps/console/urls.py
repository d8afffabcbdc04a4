"""Console routes, mounted under /admin/console/ (staff) by daarion/urls.py."""

from django.urls import path

from apps.console import views

app_name = "console"

urlpatterns = [
    path("playground/", views.playground_page, name="playground"),
    path("playground/stream", views.playground_stream, name="playground-stream"),
    path("providers/<int:pk>/test/", views.provider_test_page, name="provider-test"),
    path("tools/<int:pk>/try/", views.tool_try_page, name="tool-try"),
    path("json/validate", views.json_validate_view, name="json-validate"),
]
