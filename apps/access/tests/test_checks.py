"""daarion.W001 (apps/access/checks.py): service tokens bound to agents that do not exist, found
by `manage.py check --database default` in rows written past the services."""

from __future__ import annotations

import io

from django.core.checks import Tags, run_checks
from django.core.checks.messages import WARNING
from django.core.management import call_command

from apps.access.models import ServiceToken
from apps.access.services import service_token_create


def _token_warnings() -> list:
    return [m for m in run_checks(databases=["default"], tags=[Tags.database]) if m.id == "daarion.W001"]


def test_tokens_bound_to_missing_agents_are_reported(make_agents):
    make_agents("agent:pm", "agent:sofia")
    service_token_create(name="bound", scopes=["tools"], agents=["agent:pm", "agent:sofia"])
    service_token_create(name="unbound", scopes=["tools"])  # null: any agent, names nobody
    service_token_create(name="nobody", scopes=["tools"], agents=[])
    assert _token_warnings() == []

    # Written past the services, as rows from before the rule were.
    ServiceToken.objects.filter(name="bound").update(agents=["agent:gone", "agent:pm"])
    ServiceToken.objects.filter(name="nobody").update(agents=["agent:typo"])

    warnings = _token_warnings()
    assert [(m.level, m.msg) for m in warnings] == [
        (WARNING, "service token 'bound' is bound to agents that do not exist: 'agent:gone'"),
        (WARNING, "service token 'nobody' is bound to agents that do not exist: 'agent:typo'"),
    ]
    assert "Service tokens" in warnings[0].hint and "not null" in warnings[0].hint

    err = io.StringIO()
    call_command("check", "--database", "default", stdout=io.StringIO(), stderr=err)
    assert "(daarion.W001) service token 'bound' is bound to agents that do not exist: 'agent:gone'" in err.getvalue()
    # The token's secret never appears, only its name.
    assert ServiceToken.objects.get(name="bound").secret_hash not in err.getvalue()

    ServiceToken.objects.filter(name__in=["bound", "nobody"]).update(agents=["agent:pm"])
    assert _token_warnings() == []


def test_the_check_keeps_a_caller_transaction_usable_and_its_queries_do_not_grow_with_rows(
    make_agents, django_assert_max_num_queries
):
    make_agents("agent:pm")
    for n in range(20):
        service_token_create(name=f"t{n}", scopes=["tools"], agents=["agent:pm"])
    ServiceToken.objects.filter(name__in=["t3", "t7"]).update(agents=["agent:gone"])
    from apps.access.checks import check_service_token_agents

    # table introspection, the tokens, the savepoint pair, the agents: not one query per token.
    with django_assert_max_num_queries(5):
        warnings = check_service_token_agents(databases=["default"])
    assert [m.msg for m in warnings] == [
        "service token 't3' is bound to agents that do not exist: 'agent:gone'",
        "service token 't7' is bound to agents that do not exist: 'agent:gone'",
    ]
    assert ServiceToken.objects.count() == 20  # the test's transaction still works
