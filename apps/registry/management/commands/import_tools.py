"""manage.py import_tools FILE.yaml [--dry-run]: the `tools:` section of a file (the seed's
config.yaml, say) through the registry engine; the file's other sections are left alone."""

from __future__ import annotations

from apps.registry.cli import ImportCommand


class Command(ImportCommand):
    help = "Creates or updates tools from a YAML file's top-level `tools:` list (all or nothing)."
    sections = ("tools",)
