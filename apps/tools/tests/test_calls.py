"""tool_call(): every refusal is an outcome with error_type, and every call is audited."""

from __future__ import annotations

import pytest

from apps.tools.audit import audit_flush
from apps.tools.models import ToolCall
from apps.tools.services import tool_update
from apps.tools.tests.conftest import call, flushed_calls

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_SCHEMA = {
    "type": "object",
    "properties": {
        "microdao_id": {"type": "string"},
        "password": {"type": "string", "writeOnly": True},
        "auth": {"type": "object", "properties": {"token": {"type": "string", "x-secret": True}, "user": {"type": "string"}}},
        "keys": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string", "x-secret": True}}}},
    },
    "required": ["microdao_id"],
}


def test_unknown_and_disabled_tools(make_tool):
    assert call("no.such").error_type == "tool_not_found"
    tool = make_tool("t.off")
    tool_update(tool=tool, enabled=False)
    outcome = call("t.off")
    assert (outcome.ok, outcome.error_type, outcome.status) == (False, "tool_disabled", "not_found")
    rows = flushed_calls()
    assert [(r.tool_id, r.status, r.tool_version) for r in rows] == [("no.such", "not_found", None), ("t.off", "not_found", 2)]


def test_denied_agent_is_refused_and_audited(make_tool, http_target, allow_local, target_requests):
    make_tool("t.pm-only", target=f"{http_target}/echo", allowed_agents=["agent:pm"])
    make_tool("t.nobody", target=f"{http_target}/echo", allowed_agents=[])
    denied = call("t.pm-only", agent_id="agent:sofia")
    assert (denied.ok, denied.error_type, denied.status) == (False, "tool_not_allowed", "denied")
    assert call("t.nobody", agent_id="agent:pm").error_type == "tool_not_allowed"
    assert call("t.pm-only", agent_id="agent:pm").ok
    assert len(target_requests) == 1  # refused calls never reached the target
    assert [(r.agent_id, r.status) for r in flushed_calls()] == [
        ("agent:sofia", "denied"),
        ("agent:pm", "denied"),
        ("agent:pm", "ok"),
    ]


def test_invalid_args_name_each_json_path(make_tool):
    make_tool(
        "t.strict",
        input_schema={
            "type": "object",
            "properties": {
                "microdao_id": {"type": "string"},
                "limit": {"type": "integer", "maximum": 10},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["microdao_id"],
            "additionalProperties": False,
        },
    )
    outcome = call("t.strict", args={"limit": 50, "tags": ["ok", 3], "extra": 1})
    assert outcome.error_type == "invalid_args" and outcome.status == "invalid_args"
    paths = {d["path"] for d in outcome.details}
    assert paths == {"$.microdao_id", "$.limit", "$.tags[1]", "$"}
    assert any("'extra' was unexpected" in d["message"] for d in outcome.details)
    not_object = call("t.strict", args=["x"])
    assert not_object.error_type == "invalid_args" and not_object.details[0]["path"] == "$"


def test_secret_args_are_redacted_in_the_audit(make_tool, http_target, allow_local, target_requests):
    make_tool("t.secretargs", target=f"{http_target}/echo", input_schema=SECRET_SCHEMA)
    args = {
        "microdao_id": "m1",
        "password": "hunter2",
        "auth": {"token": "tok-1", "user": "ann"},
        "keys": [{"k": "s1"}, {"k": "s2"}],
    }
    assert call("t.secretargs", args=args).ok
    assert target_requests[-1]["body"]["args"] == args  # the target gets the real values
    row = flushed_calls()[-1]
    assert row.args == {
        "microdao_id": "m1",
        "password": "[redacted]",
        "auth": {"token": "[redacted]", "user": "ann"},
        "keys": [{"k": "[redacted]"}, {"k": "[redacted]"}],
    }


def test_rate_limit_per_agent(make_tool, http_target, allow_local):
    make_tool("t.limited", target=f"{http_target}/echo", rate_limit_per_minute=2)
    results = [call("t.limited", agent_id="agent:pm").error_type for _ in range(3)]
    assert results == [None, None, "rate_limited"]
    assert call("t.limited", agent_id="agent:cto").ok  # a separate budget per agent
    limited = call("t.limited", agent_id="agent:pm")
    assert limited.status == "rate_limited" and limited.details["limit_per_minute"] == 2


def test_rate_limit_slides_the_previous_minute_out(make_tool, http_target, allow_local):
    """The previous minute's calls count by their share of the last 60 s, and a refused call
    is not counted (an agent retrying against its limit does not push the window ahead)."""
    import time

    from daarion.infra.redis_client import get_redis, key
    from devtools.testing import inside_one_minute

    make_tool("t.sliding", target=f"{http_target}/echo", rate_limit_per_minute=6)
    inside_one_minute(12.0)
    minute = int(time.time()) // 60
    get_redis().set(key("tools", "rl", "t.sliding", "agent:pm", str(minute - 1)), 60, ex=120)
    left = 60 - time.time() % 60  # the 60 still weigh `left` of 60: more than 6
    refused = [call("t.sliding", agent_id="agent:pm") for _ in range(3)]
    assert [o.error_type for o in refused] == ["rate_limited"] * 3
    # Room for one once they weigh under 6, i.e. left - 6 s from now.
    assert abs(refused[0].details["retry_after_s"] - (left - 6)) <= 1.5
    assert get_redis().get(key("tools", "rl", "t.sliding", "agent:pm", str(minute))) is None
    assert call("t.sliding", agent_id="agent:cto").ok  # another agent's budget


def test_audit_row_fields_and_replay_is_idempotent(make_tool, http_target, allow_local):
    make_tool("t.audit", target=f"{http_target}/fail")
    outcome = call("t.audit", request_id="req-audit-1", microdao_id="microdao:9")
    row = flushed_calls()[0]
    assert (row.tool_id, row.agent_id, row.microdao_id, row.status, row.error_type, row.request_id) == (
        "t.audit",
        "agent:sofia",
        "microdao:9",
        "error",
        "upstream_status",
        "req-audit-1",
    )
    assert row.error == outcome.error and row.latency_ms > 0
    # A flusher that died after inserting but before trimming leaves the batch; the next one
    # re-inserts it without doubling a row.
    from apps.tools.audit import _list_key, _rows
    from daarion.infra.redis_client import get_redis
    import json

    entry = {
        "call_id": str(row.call_id).replace("-", ""),
        "tool_id": "t.audit",
        "agent_id": "agent:sofia",
        "status": "error",
        "created_at": 0,
    }
    get_redis().rpush(_list_key(), json.dumps(entry))
    assert audit_flush() == 1
    assert ToolCall.objects.filter(call_id=row.call_id).count() == 1
    assert get_redis().llen(_list_key()) == 0
    assert _rows([entry])[0].call_id == row.call_id


def test_audit_falls_back_to_direct_write_when_redis_is_unreachable(make_tool, settings, monkeypatch):
    from apps.tools import audit

    def broken():
        raise ConnectionError("redis down")

    monkeypatch.setattr(audit, "get_async_redis", broken)
    call("no.such.tool")
    assert ToolCall.objects.get(tool_id="no.such.tool").status == "not_found"


def test_celery_task_flushes_the_queue(make_tool, celery_worker):
    """The beat backstop: a real worker knows the task; its body drains the queue."""
    from apps.tools.tasks import flush_audit

    assert isinstance(flush_audit.delay().get(timeout=30), int)
    call("no.such.tool.for.celery")
    assert flush_audit() == 1
    assert ToolCall.objects.filter(tool_id="no.such.tool.for.celery").exists()


def test_flush_tool_audit_command():
    import io

    from django.core.management import call_command

    call("no.such.tool.for.command")
    out = io.StringIO()
    call_command("flush_tool_audit", stdout=out)
    assert out.getvalue().strip() == "flushed 1 audit entries"
    assert ToolCall.objects.filter(tool_id="no.such.tool.for.command").exists()


def test_a_row_written_past_the_services_cannot_break_calls(make_tool, http_target, allow_local):
    """A schema stored by raw SQL leaves that tool out (404), and non-JSON args fail cleanly."""
    from apps.tools.models import Tool
    from apps.tools.services import tool_update

    tool = make_tool("t.raw", target=f"{http_target}/echo")
    Tool.objects.filter(pk=tool.pk).update(input_schema={"type": 12})
    make_tool("t.other", target=f"{http_target}/echo")  # bumps the registry version
    assert call("t.raw").error_type == "tool_not_found"
    assert call("t.other").ok
    odd = call("t.other", args={"microdao_id": "m", "when": object()})
    assert odd.error_type == "execution_error" and "not JSON serializable" in odd.error
    tool_update(tool=Tool.objects.get(pk=tool.pk), input_schema={"type": "object"})
    assert call("t.raw").ok


def test_invalid_secret_values_are_not_quoted(make_tool):
    schema = {
        **SECRET_SCHEMA,
        "properties": {**SECRET_SCHEMA["properties"], "password": {"type": "string", "writeOnly": True, "minLength": 10}},
    }
    make_tool("t.secretcheck", input_schema=schema)
    outcome = call("t.secretcheck", args={"microdao_id": "m", "password": "hunter2", "keys": [{"k": 5}]})
    assert outcome.error_type == "invalid_args"
    assert "hunter2" not in outcome.error and "hunter2" not in str(outcome.details)
    assert {"path": "$.password", "message": "the value breaks the 'minLength' rule"} in outcome.details
    assert {"path": "$.keys[0].k", "message": "the value breaks the 'type' rule"} in outcome.details
    row = flushed_calls()[-1]
    assert "hunter2" not in row.error and row.args["password"] == "[redacted]"


def test_rate_limit_holds_under_concurrent_calls(make_tool, http_target, allow_local):
    import asyncio

    from apps.tools.services import tool_call
    from apps.tools.tests.conftest import run

    make_tool("t.burst", target=f"{http_target}/echo", rate_limit_per_minute=5)

    async def burst():
        return await asyncio.gather(
            *[tool_call(tool_id="t.burst", agent_id="agent:pm", microdao_id="m", args={"microdao_id": "m"}) for _ in range(12)]
        )

    outcomes = run(burst())
    assert sorted(o.error_type or "ok" for o in outcomes) == ["ok"] * 5 + ["rate_limited"] * 7
