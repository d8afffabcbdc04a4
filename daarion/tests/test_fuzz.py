"""Schemathesis over the OpenAPI documents of /internal, /v1 and /api/registry against the real
server: zero server errors, zero answers that break their documented schema or status. A
bounded example count per operation (DAARION_FUZZ_EXAMPLES, 5) keeps it part of every run.

Registry applies are dry runs only (testsupport/fuzz_hooks.py) and nothing is deleted: the
fuzzer may create and edit objects of the test database, never remove seeded ones.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.environ.get("DAARION_FUZZ_EXAMPLES", "5")
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("document", ["/internal/openapi.json", "/v1/openapi.json", "/api/registry/schema/?format=json"])
def test_no_server_errors_and_no_schema_mismatches(asgi_server, make_token, repo_root, tmp_path, document) -> None:
    from apps.llm import services

    stub = services.provider_create(name="stub", kind="stub")
    services.deployment_create(
        logical_model=services.logical_model_create(name="dagi-stub"), provider=stub, upstream_model="dagi-stub"
    )
    # The registry API takes no agent-bound token; the service APIs need an agent to act for.
    registry = document.startswith("/api/registry")
    token = (
        make_token(scopes=["registry"])
        if registry
        else make_token(scopes=["llm", "memory", "tools", "agents"], agents=["agent:sofia"])
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{asgi_server.url}{document}",
        "--url",
        asgi_server.url,
        "--checks",
        CHECKS,
        "--max-examples",
        EXAMPLES,
        "--seed",
        "18",
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-method",
        "DELETE",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        # An agent turn waits for an `agents` worker this test does not run (they are fuzzed
        # nowhere else either: apps/agents/tests drive them with real workers).
        "--exclude-path-regex",
        r"^/internal/agents/\{agent_id\}/(chat|runs)$",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "testsupport.fuzz_hooks", "PYTHONPATH": str(repo_root)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
