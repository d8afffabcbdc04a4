"""manage.py import_registry FILE.yaml [--dry-run] [--prune]: applies a registry document
(providers, models, rate_limits, agents, tools, mcp_servers) through the registry engine
(apps/registry/documents/, the one POST /api/registry/apply uses) and prints its plan.
See docs/REGISTRY_API.md."""

from __future__ import annotations

from apps.registry.cli import ImportCommand


class Command(ImportCommand):
    help = "Imports a registry document (every section) from YAML or JSON; idempotent."
