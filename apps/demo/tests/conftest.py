"""Fixtures of the demo tests: toolcore's, since the demo tools run through toolcore (its test
server, its tool factory, its in-process audit queue)."""

from __future__ import annotations

from apps.tools.tests.conftest import _audit_in_foreground, make_tool, tools_api, tools_server  # noqa: F401
