"""An agent-scope rate-limit policy must name an agent that exists, through every door (the
services, admin, the seed-shaped import), and deleting an agent deletes its policies in the
same transaction, logged, and live in a running server."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from apps.llm import services
from apps.llm.models import RateLimitPolicy
from apps.llm.selectors import load_registry
from apps.llm.tests.conftest import wait_for
from daarion.infra.errors import ValidationFailed

UNKNOWN_GHOST = (
    "no agent 'agent:ghost' in the registry (create the agent first, or list it under agents: in the same registry document)"
)


@pytest.mark.django_db
def test_an_agent_policy_needs_an_existing_agent(make_agents):
    with pytest.raises(ValidationFailed) as raised:
        services.rate_limit_policy_create(scope="agent", subject="agent:ghost", rpm=5)
    assert raised.value.by_path() == {"subject": [UNKNOWN_GHOST]}
    assert not RateLimitPolicy.objects.exists()
    # Other problems of the same policy are reported beside it.
    with pytest.raises(ValidationFailed) as raised:
        services.rate_limit_policy_create(scope="agent", subject="agent:ghost", rpm=0)
    assert set(raised.value.by_path()) == {"subject", "rpm"}

    make_agents("agent:ghost")
    policy = services.rate_limit_policy_create(scope="agent", subject=" agent:ghost ", rpm=5)
    assert (policy.scope, policy.subject, policy.rpm) == ("agent", "agent:ghost", 5)
    assert services.rate_limit_policy_update(policy=policy, rpm=9).rpm == 9


@pytest.mark.django_db
def test_microdao_and_default_policies_name_no_agent():
    services.rate_limit_policy_create(scope="default", rpm=60)
    services.rate_limit_policy_create(scope="microdao", subject="microdao:nowhere", rpm=5)
    assert RateLimitPolicy.objects.count() == 2


@pytest.mark.django_db
def test_a_registry_document_refuses_an_unknown_agent_at_its_path(make_agents):
    from apps.registry.documents import registry_apply

    data = {"rate_limits": [{"scope": "default", "rpm": 60}, {"scope": "agent", "subject": "agent:ghost", "rpm": 5}]}
    with pytest.raises(ValidationFailed) as raised:
        registry_apply(document=data, prune=False)
    assert raised.value.details == [{"path": "rate_limits[1].subject", "message": UNKNOWN_GHOST}]
    assert not RateLimitPolicy.objects.exists(), "all or nothing"
    make_agents("agent:ghost")
    assert [i.path for i in registry_apply(document=data, prune=False).items if i.action == "create"] == [
        "rate_limits[0]",
        "rate_limits[1]",
    ]


@pytest.mark.django_db
def test_import_registry_command_refuses_an_unknown_agent_and_takes_one_from_the_file():
    text = 'rate_limits:\n  - {scope: agent, subject: "agent:ghost", rpm: 5}\n'
    with pytest.raises(CommandError) as raised:
        call_command("import_registry", "-", stdin=io.StringIO(text), stdout=io.StringIO())
    assert str(raised.value) == f"rate_limits[0].subject: {UNKNOWN_GHOST}"
    assert not RateLimitPolicy.objects.exists()
    # The same file with the agent under agents: creates the agent first, then its policy.
    with_agent = text + 'agents:\n  - {id: "agent:ghost", name: Ghost, microdao_id: "microdao:7", model: m}\n'
    out = io.StringIO()
    call_command("import_registry", "-", stdin=io.StringIO(with_agent), stdout=out)
    assert "created: agents[0]" in out.getvalue() and "created: rate_limits[0]" in out.getvalue()
    assert RateLimitPolicy.objects.get().subject == "agent:ghost"


def _policy_form(**overrides) -> dict:
    return {"scope": "agent", "subject": "agent:ghost", "rpm": "5", "tpm": "", "max_concurrent": "", "enabled": "on", **overrides}


@pytest.mark.django_db
def test_admin_shows_an_unknown_agent_on_the_subject_field(admin_client, make_agents):
    response = admin_client.post("/admin/llm/ratelimitpolicy/add/", _policy_form())
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"subject": [UNKNOWN_GHOST]}
    assert not RateLimitPolicy.objects.exists()
    # A zero limit is a field error too, not a 500 page.
    response = admin_client.post("/admin/llm/ratelimitpolicy/add/", _policy_form(scope="microdao", subject="microdao:7", rpm="0"))
    assert response.status_code == 200 and "rpm" in response.context["adminform"].form.errors

    make_agents("agent:ghost")
    response = admin_client.post("/admin/llm/ratelimitpolicy/add/", _policy_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = RateLimitPolicy.objects.get()
    data = _policy_form(rpm="7")
    del data["scope"], data["subject"]  # read-only once stored
    assert admin_client.post(f"/admin/llm/ratelimitpolicy/{policy.pk}/change/", data).status_code == 302
    assert RateLimitPolicy.objects.get().rpm == 7


@pytest.mark.django_db
def test_deleting_an_agent_deletes_its_policies_and_logs_it(make_agents):
    from apps.agents.models import Agent
    from apps.agents.services import agent_delete
    from apps.access.audit import acting_as
    from apps.access.models import ChangeRecord

    make_agents("agent:pm", "agent:sofia")
    services.rate_limit_policy_create(scope="default", rpm=60)
    services.rate_limit_policy_create(scope="microdao", subject="microdao:7", rpm=30)
    services.rate_limit_policy_create(scope="agent", subject="agent:pm", rpm=5)
    services.rate_limit_policy_create(scope="agent", subject="agent:sofia", rpm=6)
    with acting_as("token:ci-deployer", "api"):
        agent_delete(agent=Agent.objects.get(pk="agent:pm"))
    assert sorted(RateLimitPolicy.objects.values_list("scope", "subject")) == [
        ("agent", "agent:sofia"),
        ("default", ""),
        ("microdao", "microdao:7"),
    ]
    assert set(load_registry().policies) == {("agent", "agent:sofia"), ("default", ""), ("microdao", "microdao:7")}
    records = ChangeRecord.objects.filter(actor="token:ci-deployer").order_by("id")
    assert [(r.object_type, r.object_repr, r.action, r.source) for r in records] == [
        ("llm.RateLimitPolicy", "agent:agent:pm", "delete", "api"),
        ("agents.Agent", "Pm (agent:pm)", "delete", "api"),
    ]
    assert records[0].changes["rpm"] == [5, None]
    # A new agent under the same id starts without the old limit.
    make_agents("agent:pm")
    assert not RateLimitPolicy.objects.filter(subject="agent:pm").exists()


@pytest.mark.django_db
def test_a_delete_that_rolls_back_keeps_the_policy(make_agents):
    from apps.agents.models import Agent
    from apps.agents.services import agent_delete

    make_agents("agent:pm")
    services.rate_limit_policy_create(scope="agent", subject="agent:pm", rpm=5)
    with pytest.raises(RuntimeError), transaction.atomic():
        agent_delete(agent=Agent.objects.get(pk="agent:pm"))
        raise RuntimeError("the caller's transaction fails after the delete")
    assert RateLimitPolicy.objects.get().subject == "agent:pm"


def test_a_running_server_drops_the_deleted_agents_limit(api, stub_model, llm_headers, live, make_agents):
    from apps.agents.models import Agent
    from apps.agents.services import agent_delete

    make_agents("agent:capped")
    services.rate_limit_policy_create(scope="agent", subject="agent:capped", rpm=1000)
    live()
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}], "metadata": {"agent_id": "agent:capped"}}

    def limit() -> str | None:
        response = api.post("/internal/llm/proxy", json=body, headers=llm_headers)
        assert response.status_code == 200, response.text
        return response.headers.get("x-ratelimit-limit-requests")

    assert wait_for(lambda: limit() == "1000"), "the server applies the agent's policy"
    agent_delete(agent=Agent.objects.get(pk="agent:capped"))
    assert wait_for(lambda: limit() is None), "the server dropped the deleted agent's policy"
