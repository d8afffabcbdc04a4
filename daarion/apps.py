from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project wiring as an app (no models): tracing and the Celery signals, and the fast
    lane's version check. Service tokens and the change log are apps/access, which kept the
    label "daarion"."""

    name = "daarion"
    label = "project"
    verbose_name = "DAARION"

    def ready(self) -> None:
        from django.core.checks import register

        from daarion.fastlane.versions import check_fast_lane_versions

        _observability()
        register(check_fast_lane_versions)


def _observability() -> None:
    """Tracing (when configured) and the Celery signals behind worker heartbeats, task metrics
    and trace propagation into tasks (daarion/observability/)."""
    import sys

    from daarion.observability import celery_signals, tracing

    argv = " ".join(sys.argv[:3])
    tracing.configure(service_name="daarion-worker" if "celery" in argv else "daarion-web")
    celery_signals.connect()
