"""Tenant-bound quotas (issue #18 item 5): a call is charged to the microDAO of its agent, from
the agent registry, never to one the caller names freely. Over real HTTP on both doors."""

from __future__ import annotations

import pytest

from apps.agents.services import agent_create
from apps.llm import services
from apps.llm.tests.conftest import usage_rows

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def tenants(transactional_db, stub_model):
    agent_create(agent_id="agent:nine", name="Nine", microdao_id="microdao:9", model="dagi-stub")
    # The victim's quota: one call a minute. Charging it twice would answer 429.
    services.rate_limit_policy_create(scope="microdao", subject="microdao:victim", rpm=1)


def _proxy(api, headers, *, request_id: str, agent_id: str | None = None, microdao_id: str | None = None):
    metadata = {k: v for k, v in {"agent_id": agent_id, "microdao_id": microdao_id}.items() if v}
    return api.post(
        "/internal/llm/proxy",
        json={"model": "dagi-stub", "messages": HELLO, "request_id": request_id, "metadata": metadata},
        headers=headers,
    )


def test_an_agent_bound_token_naming_another_microdao_is_403(api, tenants, make_token, bearer, live):
    live()
    headers = bearer(make_token(scopes=["llm"], agents=["agent:nine"]))
    refused = _proxy(api, headers, request_id="req-t-1", microdao_id="microdao:victim")
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["type"] == "microdao_mismatch"
    assert error["details"]["agent_microdao_id"] == "microdao:9"
    v1 = api.post(
        "/v1/chat/completions",
        json={"model": "dagi-stub", "messages": HELLO},
        headers={**headers, "X-Microdao-Id": "microdao:victim"},
    )
    assert v1.status_code == 403 and v1.json()["error"]["code"] == "microdao_mismatch"
    # Without naming one, the call is charged to the agent's own microDAO.
    served = _proxy(api, headers, request_id="req-t-2")
    assert served.status_code == 200, served.text
    assert usage_rows(request_id="req-t-2")[0].microdao_id == "microdao:9"


def test_a_named_agent_takes_its_microdao_from_the_registry(api, tenants, make_token, bearer, live):
    live()
    headers = bearer(make_token(scopes=["llm"]))  # may act for any agent
    refused = _proxy(api, headers, request_id="req-t-3", agent_id="agent:nine", microdao_id="microdao:victim")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "microdao_mismatch"
    served = _proxy(api, headers, request_id="req-t-4", agent_id="agent:nine", microdao_id="microdao:9")
    assert served.status_code == 200, served.text


def test_a_call_without_an_agent_never_charges_a_microdao_it_names_freely(api, tenants, make_token, bearer, live):
    live()
    headers = bearer(make_token(scopes=["llm"]))
    for index in range(3):  # over the victim's rpm of 1, had it been charged
        served = _proxy(api, headers, request_id=f"req-t-free-{index}", microdao_id="microdao:victim")
        assert served.status_code == 200, served.text
    assert {row.microdao_id for row in usage_rows(count=3, request_id__startswith="req-t-free-")} == {""}
    # A token bound to an agent of that microDAO may name it.
    bound = bearer(make_token(scopes=["llm"], agents=["agent:nine", "agent:other"]))
    assert (
        _proxy(api, bound, request_id="req-t-5", agent_id="agent:other", microdao_id="microdao:victim").status_code == 403
    )  # agent:other is of microdao:7
