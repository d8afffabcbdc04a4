"""Durable agent runs: a turn queued by a web process, executed by one worker on the `agents`
queue under a Redis lease, its UI message chunks appended to a Redis Stream that any web
process can replay or follow (see docs/AGENTS_SPEC.md, "Runs")."""
