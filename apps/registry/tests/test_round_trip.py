"""The commands and the API are one engine: `export_registry` → `import_registry --dry-run` on
the demo registry (every section filled) plans nothing, and a malformed document is refused at
the same paths by the command and by POST /api/registry/apply."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.registry.documents import SECTIONS, registry_apply

pytestmark = pytest.mark.django_db(transaction=True)


def _demo_registry() -> None:
    """The demo (models, agents, tools) plus what it lacks: rate limits, secrets and an MCP
    server, so no section of the export is empty."""
    from apps.demo import agents as agents_demo
    from apps.demo import registry as registry_demo
    from apps.demo import tools as tools_demo

    registry_demo.seed()
    agents_demo.seed()
    tools_demo.seed()
    registry_apply(
        prune=False,
        document={
            "rate_limits": [
                {"scope": "default", "rpm": 600},
                {"scope": "microdao", "subject": "microdao:7", "tpm": 100000, "budget_usd": 25},
            ],
            "agents": [
                {
                    "id": "agent:sofia",
                    "name": "Sofia-Prime",
                    "microdao_id": "microdao:7",
                    "model": "dagi-stub",
                    "secrets": {"VENDOR_TOKEN": {"value": "vendor-secret-1"}},
                }
            ],
            "mcp_servers": [
                {
                    "name": "docs",
                    "url": "https://mcp.example.com/mcp",
                    "prefix": "docs",
                    "enabled": False,
                    "headers": {"Authorization": {"value": "Bearer upstream-secret-2"}},
                }
            ],
        },
    )


def test_export_then_dry_run_import_plans_nothing(tmp_path):
    _demo_registry()
    target = tmp_path / "registry.yaml"
    call_command("export_registry", "-o", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    text = target.read_text()
    exported = yaml.safe_load(text)
    assert list(exported) == list(SECTIONS)
    assert all(exported[section] for section in SECTIONS), [s for s in SECTIONS if not exported[s]]
    assert "vendor-secret-1" not in text and "upstream-secret-2" not in text
    # Secrets travel as the names of variables; where this environment does not set them, the
    # stored values are kept.
    out = io.StringIO()
    call_command("import_registry", str(target), "--dry-run", "--prune", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dry run: 0 would be created, 0 would be updated, ")
    assert lines[0].endswith(" unchanged, 0 would be deleted")


MALFORMED = [
    ({"models": {"m": {"provider": "nope", "name": "m"}}}, "models.m.provider"),
    ({"providers": {"p": {"kind": "stub", "timeout": "soon"}}}, "providers.p.timeout"),
    ({"tools": [{"id": "t.one", "colour": "red"}]}, "tools[0]"),
    ({"rate_limits": [{"scope": "agent", "subject": "agent:ghost", "rpm": 5}]}, "rate_limits[0].subject"),
    (
        {"agents": [{"id": "agent:x", "name": "X", "microdao_id": "microdao:7", "model": "m", "temperature": "hot"}]},
        "agents[0].temperature",
    ),
    ({"mcp_servers": [{"name": "m", "url": "ftp://mcp.example.com", "prefix": "m"}]}, "mcp_servers[0].url"),
    ({"stuff": 1}, "(root)"),
    ([1], "(root)"),
    # Every shape problem at once, in the document's order, each at its own path.
    ({"models": {"m": {"provider": "s", "context_window": 1.5, "enabled": "yes"}}}, "models.m.context_window"),
    ({"models": {"m": {"deployments": [{"name": "x", "rpm": "fast"}]}}}, "models.m.deployments[0].provider"),
    ({"tools": [{"id": "t.a", "secrets": {"K": {"env": "X", "value": "y"}}}]}, "tools[0].secrets.K"),
    # A rule of the deployment service, at the deployment's place in the document.
    # (its field names spelled as the document spells them).
    (
        {"providers": {"s": {"kind": "stub"}}, "models": {"m": {"deployments": [{"provider": "s", "rpm": -1}]}}},
        "models.m.deployments[0].rpm",
    ),
    ({"providers": {"s": {"kind": "stub"}}, "models": {"m": {"provider": "s", "tpm": -1}}}, "models.m.tpm"),
]


@pytest.mark.parametrize(("document", "path"), MALFORMED)
def test_a_malformed_document_is_refused_at_the_same_path_by_the_command_and_the_api(token_client, document, path):
    answer = token_client.post("/apply?dry_run=true", json=document)
    assert answer.status_code == 422, answer.text
    details = answer.json()["error"]["details"]
    assert details[0]["path"] == path
    with pytest.raises(CommandError) as raised:
        call_command("import_registry", "-", "--dry-run", stdin=io.StringIO(yaml.safe_dump(document)), stdout=io.StringIO())
    # The command prints the API's details, one `path: message` line each, all of them.
    assert str(raised.value).splitlines() == [f"{d['path']}: {d['message']}" for d in details]
