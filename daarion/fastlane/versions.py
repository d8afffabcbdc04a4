"""The Django and django-ninja releases whose internals the fast lane and the trimmed handlers
mirror (handlers.py follows Django's `ASGIHandler.handle`; lane.py follows Ninja's operation:
auth, body parsing, validation errors, temporal responses).

On any other release (a minor upgrade included: internals move between minors) daarion/asgi.py
leaves them out, so every request takes Django's and Ninja's own way, and `manage.py check`
warns (daarion.W002). Upgrading: read the mirrored code against the new release, run
daarion/tests/test_fastlane.py and apps/llm/tests/test_asgi_paths.py, then update MIRRORED.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from django.core import checks

# distribution -> the major.minor release mirrored.
MIRRORED = {"django": "5.2", "django-ninja": "1.7"}


def _major_minor(distribution: str) -> str | None:
    try:
        return ".".join(version(distribution).split(".")[:2])
    except PackageNotFoundError:
        return None


def version_mismatches(mirrored: dict[str, str] | None = None) -> list[str]:
    """One line per installed release that differs from the mirrored one; empty when all match."""
    out = []
    for distribution, wanted in (MIRRORED if mirrored is None else mirrored).items():
        installed = _major_minor(distribution)
        if installed is None:
            out.append(f"{distribution} is not installed; the fast lane mirrors {wanted}")
        elif installed != wanted:
            out.append(f"{distribution} {installed} is installed; the fast lane mirrors {wanted}")
    return out


def check_fast_lane_versions(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """daarion.W002: Django or django-ninja is not the release the fast lane mirrors."""
    return [
        checks.Warning(
            line, hint="The service APIs run through Django's own handler; see daarion/fastlane/versions.py.", id="daarion.W002"
        )
        for line in version_mismatches()
    ]
