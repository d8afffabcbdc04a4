"""DAARION agent control plane: project wiring."""

from daarion.celery import app as celery_app

__all__ = ["celery_app"]
