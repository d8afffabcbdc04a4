"""/demo/: the projects service the demo HTTP tool `projects.list` calls, mounted by
daarion/urls.py only when `DAARION_DEMO_SERVICE` is on (the default outside production)."""

from django.urls import path

from apps.demo.projects import projects_list

urlpatterns = [
    path("projects.list", projects_list, name="demo-projects-list"),
]
