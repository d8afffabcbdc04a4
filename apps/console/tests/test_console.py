"""The operator console without a browser: front page, admin History from the change log,
records that cannot be deleted, agent load/unload, provider test connection, tool try."""

from __future__ import annotations

import re
import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from apps.agents.runtime import runtime_state
from apps.llm import usage
from apps.llm.connection_test import TEST_CHANNEL
from apps.llm.models import Provider, UsageRecord
from apps.tools.audit import audit_flush
from apps.tools.models import Tool, ToolCall
from apps.tools.services import tool_update
from apps.access.audit import acting_as


def _seed_demo() -> None:
    from apps.demo import agents as agents_demo
    from apps.demo import registry as registry_demo
    from apps.demo import tools as tools_demo

    registry_demo.seed()
    agents_demo.seed()
    tools_demo.seed()


def _until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# --- front page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_front_page_links_everything_and_hints_the_demo_token_in_development(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    (tmp_path / "demo.json").write_text("{}")
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    for href in ("/admin/", "/internal/docs", "/api/registry/docs/", "/health", "/api/registry/"):
        assert f'href="{href}"' in text
    assert "/mcp" in text
    assert 'id="demo-hint"' in text and "demo.json" in text


@pytest.mark.django_db
def test_front_page_has_no_demo_hint_in_production(client, settings):
    settings.PRODUCTION = True
    page = client.get("/")
    assert page.status_code == 200 and 'id="demo-hint"' not in page.content.decode()


@pytest.mark.django_db
def test_admin_view_site_goes_to_the_front_page(admin_client):
    page = admin_client.get("/admin/")
    assert re.search(r'<a href="/">View site</a>', page.content.decode())
    assert reverse("console:playground") in page.content.decode()


# --- history from the change log ---------------------------------------------------------------


@pytest.mark.django_db
def test_history_shows_the_change_records_of_every_door(admin_client):
    _seed_demo()
    tool = Tool.objects.get(tool_id="followups.create")
    with acting_as("token:automation", "api"):
        tool_update(tool=tool, description="Creates a follow-up (edited through the API)")
    page = admin_client.get(reverse("admin:tools_tool_history", args=[tool.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="change-history"' in text
    assert "token:automation" in text and ">api<" in text and "edited through the API" in text
    assert "<code>description</code>" in text  # the diff, field by field


# --- records that must not be lost ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["llm/usagerecord", "tools/toolcall", "memory/memoryjob", "daarion/changerecord"])
def test_records_have_no_delete_action_or_page(admin_client, model):
    page = admin_client.get(f"/admin/{model}/")
    assert page.status_code == 200
    assert 'value="delete_selected"' not in page.content.decode()
    assert admin_client.get(f"/admin/{model}/1/delete/").status_code in (403, 404)


@pytest.mark.django_db
def test_usage_list_keeps_to_the_columns_that_fit(admin_client):
    UsageRecord.objects.create(logical_model="dagi-stub", status="ok", agent_id="agent:sofia", latency_ms=12)
    page = admin_client.get("/admin/llm/usagerecord/").content.decode()
    headers = re.findall(r'<th scope="col"[^>]*class="([^"]*)"', page)
    assert any("column-cost" in h for h in headers) and any("column-latency_ms" in h for h in headers)
    assert len(headers) <= 8  # the action checkbox and seven columns


# --- agents: loaded column, load / unload -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_agent_unload_and_load_actions_and_the_loaded_column(admin_client):
    _seed_demo()
    changelist = reverse("admin:agents_agent_changelist")
    page = admin_client.get(changelist).content.decode()
    assert "column-loaded" in page and "column-chat_link" in page
    answer = admin_client.post(changelist, {"action": "unload_agents", "_selected_action": ["agent:pm"]}, follow=True)
    assert "unloaded: agent:pm" in answer.content.decode().lower()
    assert async_to_sync(runtime_state)("agent:pm").loaded is False
    again = admin_client.post(changelist, {"action": "unload_agents", "_selected_action": ["agent:pm"]}, follow=True)
    assert "agent &#x27;agent:pm&#x27; is not loaded" in again.content.decode()
    admin_client.post(changelist, {"action": "load_agents", "_selected_action": ["agent:pm"]}, follow=True)
    assert async_to_sync(runtime_state)("agent:pm").loaded is True


# --- provider test connection ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_provider_test_connection_calls_each_deployment_and_marks_its_usage(admin_client):
    _seed_demo()
    stub = Provider.objects.get(name="stub")
    change = admin_client.get(reverse("admin:llm_provider_change", args=[stub.pk])).content.decode()
    url = reverse("console:provider-test", args=[stub.pk])
    assert f'href="{url}"' in change
    assert admin_client.get(url).status_code == 200  # the page with the button: no call yet
    page = admin_client.post(url).content.decode()
    assert page.count('class="check-ok"') == 2  # dagi-stub and dagi-embed-stub's deployments
    assert " ms</td>" in page

    def rows():
        usage.push_pending()
        usage.drain_to_database()
        return list(UsageRecord.objects.filter(channel_id=TEST_CHANNEL, provider="stub"))

    recorded = _until(lambda: len(rows()) >= 2 and rows())
    assert recorded and {r.status for r in recorded} == {"ok"} and {r.agent_id for r in recorded} == {""}


@pytest.mark.django_db(transaction=True)
def test_provider_test_connection_reports_an_unreachable_upstream(admin_client):
    _seed_demo()
    local = Provider.objects.get(name="local")  # http://local-llm:8000: no such host here
    Provider.objects.filter(pk=local.pk).update(base_url="http://127.0.0.1:9/v1", timeout_seconds=2)
    from apps.llm.selectors import registry_snapshot

    registry_snapshot.get(recheck=True)
    page = admin_client.post(reverse("console:provider-test", args=[local.pk])).content.decode()
    assert 'class="check-failed"' in page and "connection" in page


# --- tool try ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tool_try_form_from_the_schema_runs_and_links_the_audit_row(admin_client, settings):
    settings.TOOLS_AUDIT_FLUSH_INTERVAL = 0
    _seed_demo()
    tool = Tool.objects.get(tool_id="followups.create")
    url = reverse("console:tool-try", args=[tool.pk])
    form = admin_client.get(url).content.decode()
    for name in ("arg_microdao_id", "arg_title", "arg_assignee", "arg_due_date"):
        assert f'name="{name}"' in form
    answer = admin_client.post(
        url,
        {
            "agent_id": "agent:sofia",
            "microdao_id": "microdao:7",
            "arg_microdao_id": "microdao:7",
            "arg_title": "Ship the console",
        },
    )
    text = answer.content.decode()
    assert 'class="outcome-ok"' in text and "Ship the console" in text
    request_id = re.search(r"request id <code>([^<]+)</code>", text).group(1)
    assert f"?q={request_id}" in text
    _until(lambda: audit_flush() or ToolCall.objects.filter(request_id=request_id).exists())
    assert ToolCall.objects.get(request_id=request_id).status == "ok"


@pytest.mark.django_db(transaction=True)
def test_tool_try_puts_schema_errors_on_their_fields(admin_client):
    _seed_demo()
    tool = Tool.objects.get(tool_id="followups.create")
    answer = admin_client.post(
        reverse("console:tool-try", args=[tool.pk]),
        {
            "agent_id": "agent:sofia",
            "microdao_id": "microdao:7",
            "arg_microdao_id": "microdao:7",
            "arg_title": "",
        },
    )
    text = answer.content.decode()
    assert 'class="outcome-failed"' in text and "invalid_args" in text
    # The missing title lands on the title field, not only in the summary.
    assert re.search(
        r'<div class="form-row errors">\s*<ul class="errorlist[^"]*"[^>]*><li>&#x27;title&#x27; is a required property', text
    )


@pytest.mark.django_db
def test_history_of_an_agent_and_a_model_include_their_inline_rows(admin_client):
    from apps.agents.models import Agent
    from apps.agents.services import agent_secret_set
    from apps.llm.models import LogicalModel

    _seed_demo()
    agent = Agent.objects.get(pk="agent:pm")
    agent_secret_set(agent=agent, name="PM_TOKEN", value="pm-secret-value-123")
    page = admin_client.get(reverse("admin:agents_agent_history", args=["agent:pm"])).content.decode()
    assert "agents.AgentSecret: agent:pm:PM_TOKEN" in page and "pm-secret-value-123" not in page
    other = admin_client.get(reverse("admin:agents_agent_history", args=["agent:cto"])).content.decode()
    assert "PM_TOKEN" not in other
    model = LogicalModel.objects.get(name="dagi-stub")
    page = admin_client.get(reverse("admin:llm_logicalmodel_history", args=[model.pk])).content.decode()
    assert "llm.Deployment: " in page and "dagi-stub" in page
