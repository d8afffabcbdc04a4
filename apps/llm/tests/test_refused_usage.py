"""Calls refused before routing (unknown or disabled model, rate limits) leave a usage record
with status `refused` and the error's type, in-process and over the API, so per-agent
accounting shows refusals."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway, services
from apps.llm.models import UsageRecord
from apps.llm.tests.conftest import usage_rows
from daarion.infra.errors import BadRequest, NotFound, RateLimited

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]


def _one(request_id: str) -> UsageRecord:
    rows = usage_rows(request_id=request_id)
    assert len(rows) == 1, rows
    return rows[0]


def test_an_unknown_model_is_recorded_as_refused(stub_model):
    with pytest.raises(NotFound):
        gateway.chat_completion_sync(
            model="no-such-model", messages=HELLO, agent_id="agent:a", microdao_id="microdao:7", request_id="req-refused-unknown"
        )
    row = _one("req-refused-unknown")
    assert (row.status, row.error_type, row.agent_id, row.microdao_id) == ("refused", "model_not_found", "agent:a", "microdao:7")
    assert (row.logical_model, row.provider, row.total_tokens, float(row.cost), row.attempts) == ("no-such-model", "", 0, 0.0, 0)


def test_a_disabled_model_stream_and_an_embedding_refusal_are_recorded(stub_model, stub_provider, make_model):
    services.logical_model_update(model=stub_model, enabled=False)

    async def stream() -> None:
        async for _ in gateway.stream_chat_completion(
            model="dagi-stub", messages=HELLO, agent_id="agent:a", request_id="req-refused-disabled"
        ):
            pass

    with pytest.raises(NotFound):
        async_to_sync(stream)()
    row = _one("req-refused-disabled")
    assert (row.status, row.error_type, row.stream) == ("refused", "model_disabled", True)

    make_model("chat-only", stub_provider, "dagi-stub")
    with pytest.raises(BadRequest):
        gateway.create_embeddings_sync(model="chat-only", inputs=["x"], agent_id="agent:emb")
    [row] = usage_rows(agent_id="agent:emb")
    assert (row.status, row.error_type, row.endpoint) == ("refused", "model_cannot_embed", "embeddings")


def test_a_rate_limited_call_is_recorded_per_agent(stub_model, make_agents):
    agent = f"agent:limited-{uuid.uuid4().hex[:8]}"
    make_agents(agent)
    services.rate_limit_policy_create(scope="agent", subject=agent, rpm=1)
    gateway.chat_completion_sync(model="dagi-stub", messages=HELLO, agent_id=agent, request_id=f"{agent}-1")
    with pytest.raises(RateLimited):
        gateway.chat_completion_sync(model="dagi-stub", messages=HELLO, agent_id=agent, request_id=f"{agent}-2")
    rows = usage_rows(agent_id=agent, count=2)
    assert sorted((r.request_id, r.status, r.error_type) for r in rows) == [
        (f"{agent}-1", "ok", ""),
        (f"{agent}-2", "refused", "rate_limited"),
    ]


def test_refusals_over_the_api_are_recorded(api, stub_model, llm_headers, live):
    live()
    response = api.post(
        "/internal/llm/proxy",
        headers={**llm_headers, "x-request-id": "req-refused-api"},
        json={"model": "nope", "messages": HELLO, "metadata": {"agent_id": "agent:api"}},
    )
    assert response.status_code == 404 and response.json()["error"]["type"] == "model_not_found"
    response = api.post(
        "/v1/chat/completions",
        headers={**llm_headers, "x-request-id": "req-refused-v1"},
        json={"model": "nope", "messages": HELLO, "stream": True},
    )
    assert response.status_code == 404
    rows = usage_rows(request_id__in=["req-refused-api", "req-refused-v1"], count=2)
    assert sorted((r.request_id, r.status, r.error_type, r.stream) for r in rows) == [
        ("req-refused-api", "refused", "model_not_found", False),
        ("req-refused-v1", "refused", "model_not_found", True),
    ]
    assert [r.agent_id for r in rows if r.request_id == "req-refused-api"] == ["agent:api"]
