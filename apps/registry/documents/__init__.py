"""Whole-registry documents (one engine for import_registry, import_tools, export_registry,
export_tools, the demo and /api/registry/apply|export): export the registry, plan a document
against it, apply it.

The document is the YAML/JSON shape `import_registry` reads (`providers:`, `models:`,
`rate_limits:`), extended with `tools:` (the `import_tools` items), `agents:` and
`mcp_servers:` (upstream MCP servers; their synced tools are theirs, not the `tools:` section's). Applying
one is a single transaction composed of the owning apps' services, so every rule, version
bump and change-log record holds exactly as through the admin. A section present in the
document is the whole truth about its objects: objects it does not name are deleted
(unless `prune=False`); a section left out is left alone. `export()` writes the shape back,
secrets left out, so `apply(export())` plans nothing but "unchanged".

The package by concern: `models.py` (the document's shape, pydantic), `parse.py` (shape errors
as `{path, message}` details, the values the services take), `plan.py`, `apply.py`, `export.py`.
"""

from __future__ import annotations

from apps.registry.documents.apply import registry_apply
from apps.registry.documents.export import registry_export
from apps.registry.documents.models import SECTIONS
from apps.registry.documents.parse import parse
from apps.registry.documents.plan import Plan, PlanItem

__all__ = ["SECTIONS", "Plan", "PlanItem", "parse", "registry_apply", "registry_export"]
