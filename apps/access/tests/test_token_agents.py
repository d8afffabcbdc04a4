"""A service token's `agents` must name agents that exist, through every door (the services,
admin, create_service_token), and deleting an agent takes its id out of every token in the
same transaction: logged, never widening ([] stays [], acts for no agent), and refused over
HTTP at once by the running server."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from daarion.infra.errors import ValidationFailed
from apps.access.models import ChangeRecord, ServiceToken
from apps.access.services import hash_token, service_token_create, service_token_update
from apps.access.tests.test_auth import _wait_for_status


def _unknown(agent_id: str) -> str:
    return f"no agent {agent_id!r} in the registry (create the agent first)"


def _delete_agent(agent_id: str, actor: tuple[str, str] = ("token:ci-deployer", "api")) -> None:
    from apps.agents.models import Agent
    from apps.agents.services import agent_delete
    from apps.access.audit import acting_as

    with acting_as(*actor):
        agent_delete(agent=Agent.objects.get(pk=agent_id))


@pytest.mark.django_db
def test_a_token_names_only_existing_agents(make_agents):
    make_agents("agent:sofia")
    with pytest.raises(ValidationFailed) as raised:
        service_token_create(name="typo", scopes=["llm"], agents=["agent:sofia", "agent:pmm", "agent:ctoo", "agent:pmm"])
    # Each unknown id once, by name.
    assert raised.value.by_path() == {"agents": [_unknown("agent:ctoo"), _unknown("agent:pmm")]}
    assert not ServiceToken.objects.filter(name="typo").exists()

    issued = service_token_create(name="ok", scopes=["llm"], agents=[" agent:sofia", "agent:sofia"])
    assert issued.token.agents == ["agent:sofia"]
    with pytest.raises(ValidationFailed) as raised:
        service_token_update(token=issued.token, agents=["agent:sofia", "agent:ghost"])
    assert raised.value.by_path() == {"agents": [_unknown("agent:ghost")]}
    assert ServiceToken.objects.get(name="ok").agents == ["agent:sofia"]
    with pytest.raises(ValidationFailed, match="list of agent ids"):
        service_token_create(name="bad", scopes=["llm"], agents="agent:sofia")  # type: ignore[arg-type]
    # null (any agent) and [] (no agent) name nobody; an update that leaves agents alone
    # does not look at them.
    assert service_token_create(name="any", scopes=["llm"], agents=None).token.agents is None
    assert service_token_create(name="none", scopes=["llm"], agents=[]).token.agents == []
    assert service_token_update(token=issued.token, enabled=False).enabled is False


@pytest.mark.django_db
def test_create_service_token_command_names_each_unknown_agent(make_agents):
    with pytest.raises(CommandError) as raised:
        call_command(
            "create_service_token",
            "cli",
            "--scopes",
            "llm",
            "--agents",
            "agent:ghost",
            "agent:pmm",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    assert str(raised.value) == f"agents: {_unknown('agent:ghost')}, {_unknown('agent:pmm')}"
    assert not ServiceToken.objects.filter(name="cli").exists()
    make_agents("agent:ghost", "agent:pmm")
    call_command(
        "create_service_token",
        "cli",
        "--scopes",
        "llm",
        "--agents",
        "agent:ghost",
        "agent:pmm",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert ServiceToken.objects.get(name="cli").agents == ["agent:ghost", "agent:pmm"]


@pytest.fixture
def staff(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def _token_form(**overrides) -> dict:
    return {"name": "from-admin", "scopes": ["llm"], "acts_for": "listed", "agents": "", "enabled": "on", **overrides}


def test_admin_refuses_unknown_agents_on_the_agents_field(staff, make_agents):
    make_agents("agent:sofia")
    response = staff.post("/admin/daarion/servicetoken/add/", _token_form(agents="agent:sofia\nagent:ghost, agent:pmm"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"agents": [_unknown("agent:ghost"), _unknown("agent:pmm")]}
    assert not ServiceToken.objects.exists()
    # "any agent" with a list is ambiguous: refused, not guessed.
    response = staff.post("/admin/daarion/servicetoken/add/", _token_form(acts_for="any", agents="agent:sofia"))
    assert response.status_code == 200 and "agents" in response.context["adminform"].form.errors

    response = staff.post("/admin/daarion/servicetoken/add/", _token_form(agents="agent:sofia"))
    assert response.status_code == 302, response.content.decode()[:2000]
    token = ServiceToken.objects.get(name="from-admin")
    assert token.agents == ["agent:sofia"]
    change = _token_form(agents="agent:sofia, agent:ghost")
    response = staff.post(f"/admin/daarion/servicetoken/{token.pk}/change/", change)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"agents": [_unknown("agent:ghost")]}
    assert ServiceToken.objects.get(pk=token.pk).agents == ["agent:sofia"]


def test_admin_keeps_no_agent_apart_from_any_agent(staff, make_agents):
    make_agents("agent:pm")
    service_token_create(name="narrowed", scopes=["llm"], agents=["agent:pm"])
    _delete_agent("agent:pm")
    token = ServiceToken.objects.get(name="narrowed")
    assert token.agents == []
    page = staff.get(f"/admin/daarion/servicetoken/{token.pk}/change/")
    assert page.context["adminform"].form.initial["acts_for"] == "listed"
    # Saving the page as shown (or a post without the choice) keeps it bound to no agent.
    for data in (
        _token_form(name="narrowed", enabled=""),
        {k: v for k, v in _token_form(name="narrowed").items() if k != "acts_for"},
    ):
        assert staff.post(f"/admin/daarion/servicetoken/{token.pk}/change/", data).status_code == 302
        assert ServiceToken.objects.get(pk=token.pk).agents == []
    # Only choosing "any agent" makes it unbound.
    data = _token_form(name="narrowed", acts_for="any")
    assert staff.post(f"/admin/daarion/servicetoken/{token.pk}/change/", data).status_code == 302
    assert ServiceToken.objects.get(pk=token.pk).agents is None


@pytest.mark.django_db
def test_deleting_an_agent_takes_it_out_of_every_token_and_logs_it(make_agents):
    make_agents("agent:pm", "agent:sofia")
    both = service_token_create(name="both", scopes=["llm"], agents=["agent:pm", "agent:sofia"]).token
    only = service_token_create(name="only", scopes=["llm"], agents=["agent:pm"]).token
    anyone = service_token_create(name="anyone", scopes=["llm"]).token
    other = service_token_create(name="other", scopes=["llm"], agents=["agent:sofia"]).token
    _delete_agent("agent:pm")
    assert {t.name: t.agents for t in ServiceToken.objects.all()} == {
        "both": ["agent:sofia"],
        "only": [],
        "anyone": None,
        "other": ["agent:sofia"],
    }
    records = ChangeRecord.objects.filter(actor="token:ci-deployer", object_type="daarion.ServiceToken").order_by("id")
    assert [(r.object_id, r.action, r.source, r.changes) for r in records] == [
        (str(both.pk), "update", "api", {"agents": [["agent:pm", "agent:sofia"], ["agent:sofia"]]}),
        (str(only.pk), "update", "api", {"agents": [["agent:pm"], []]}),
    ]
    assert not ChangeRecord.objects.filter(
        object_type="daarion.ServiceToken", object_id__in=[str(anyone.pk), str(other.pk)], action="update"
    ).exists()
    # A new agent under the same id is not given the old tokens.
    make_agents("agent:pm")
    assert ServiceToken.objects.get(name="only").agents == []
    # The narrowed token still saves: nothing left in it names a missing agent.
    assert service_token_update(token=ServiceToken.objects.get(name="both"), agents=["agent:sofia"]).agents == ["agent:sofia"]


def test_the_deleted_agents_token_is_refused_over_http(api, make_token, bearer):
    only = bearer(make_token(scopes=["llm"], agents=["agent:pm"]))
    both = bearer(make_token(scopes=["llm"], agents=["agent:pm", "agent:sofia"]))
    assert api.get("/internal/whoami", params={"agent_id": "agent:pm"}, headers=only).status_code == 200
    assert api.get("/internal/whoami", params={"agent_id": "agent:pm"}, headers=both).status_code == 200
    _delete_agent("agent:pm")
    refused = _wait_for_status(api, "/internal/whoami?agent_id=agent:pm", only, 403)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "agent_not_allowed"
    assert _wait_for_status(api, "/internal/whoami?agent_id=agent:pm", both, 403).status_code == 403
    # It acts for no agent now, never for any: still a known, enabled token.
    whoami = api.get("/internal/whoami", headers=only)
    assert whoami.status_code == 200 and whoami.json()["agents"] == []
    assert api.get("/internal/whoami", params={"agent_id": "agent:other"}, headers=only).status_code == 403
    assert api.get("/internal/whoami", params={"agent_id": "agent:sofia"}, headers=both).status_code == 200
    # The LLM proxy refuses it too, with or without naming the agent.
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}]}
    for extra in ({"metadata": {"agent_id": "agent:pm"}}, {}):
        response = api.post("/internal/llm/proxy", json={**body, **extra}, headers=only)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "agent_not_allowed"
    assert ServiceToken.objects.get(secret_hash=hash_token(only["Authorization"].split()[1])).agents == []
