"""A tool's secret headers (its own, its MCP server's, the calling agent's) repeated by the
target never leave toolcore: not in the call's error, details or result, not in the audit row
(`tools_toolcall.error`, shown in admin), not in a log line."""

from __future__ import annotations

import json
import logging

import pytest

from apps.tools.tests.conftest import call, flushed_calls

pytestmark = pytest.mark.django_db(transaction=True)

TOOL_SECRET = "tool-hdr-secret-4f3e2d"
AGENT_SECRET = "agent-vendor-token-9a8b7c"


@pytest.mark.parametrize("route", ["/leak", "/leak-ok"])
def test_secret_headers_echoed_by_the_target_are_redacted(make_tool, http_target, allow_local, caplog, route):
    caplog.set_level(logging.DEBUG)
    make_tool(
        "vendor.leaky",
        target=f"{http_target}{route}",
        secret_headers={"X-Key": f"Bearer {TOOL_SECRET}"},
        agent_secret_headers={"X-Vendor-Token": "VENDOR_TOKEN"},
    )
    outcome = call("vendor.leaky", agent_secrets={"VENDOR_TOKEN": AGENT_SECRET})
    seen = json.dumps([outcome.error, outcome.details, outcome.result], default=str)
    assert "[redacted]" in seen  # the target did echo them
    assert TOOL_SECRET not in seen and AGENT_SECRET not in seen
    [row] = flushed_calls()
    stored = json.dumps([row.error, row.args, row.error_type], default=str)
    assert TOOL_SECRET not in stored and AGENT_SECRET not in stored
    if route == "/leak":
        assert not outcome.ok and "[redacted]" in row.error
    assert TOOL_SECRET not in caplog.text and AGENT_SECRET not in caplog.text
