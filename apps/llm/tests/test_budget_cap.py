"""Budgets as hard caps (issue #18 item 9): the acquire reserves a call's estimated cost, the
settle replaces it with the real cost, so concurrent calls cannot spend far past a budget.
Before, 30 concurrent calls on a 1 USD budget spent 6 USD: cost was added only at settle."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway, services
from apps.llm.models import UsageRecord
from apps.llm.tests.conftest import usage_rows
from daarion.infra.errors import RateLimited

pytestmark = pytest.mark.django_db(transaction=True)

# The fake upstream answers "echo: hello" (2 completion tokens) after 0.3 s, so the 30 calls
# are all in flight together; with max_tokens=2 the estimate is the real count, each call
# costing 0.10 USD (prompt tokens free).
HELLO = [{"role": "user", "content": "hello"}]
CALL_USD = Decimal("0.10")


def test_thirty_concurrent_calls_spend_at_most_the_budget_plus_one_estimate(fake_provider, make_model, make_agents):
    make_agents("agent:capped")
    make_model("capped-model", fake_provider, "slow:0.3", input_price_per_mtok=0, output_price_per_mtok=CALL_USD / 2 * 1_000_000)
    services.rate_limit_policy_create(scope="agent", subject="agent:capped", budget_usd=1, budget_period="day")

    async def one(index: int) -> str:
        try:
            await gateway.chat_completion(
                model="capped-model", messages=HELLO, max_tokens=2, agent_id="agent:capped", request_id=f"req-cap-{index}"
            )
        except RateLimited as exc:
            return exc.type
        return "ok"

    async def all_at_once() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(30)))

    outcomes = async_to_sync(all_at_once)()
    assert outcomes.count("budget_exceeded") > 0
    served = outcomes.count("ok")
    rows = usage_rows(count=30, agent_id="agent:capped")
    spent = sum((row.cost for row in rows if row.status == "ok"), Decimal(0))
    assert len([row for row in rows if row.status == "ok"]) == served
    assert spent == CALL_USD * served  # each call cost what it was estimated at
    assert spent <= Decimal(1) + CALL_USD  # the budget, plus one call's estimate at most
    assert UsageRecord.objects.filter(agent_id="agent:capped", error_type="budget_exceeded").count() == 30 - served


def test_the_reservation_counts_until_the_settle_replaces_it_with_the_real_cost():
    from apps.llm import ratelimit

    bucket = ratelimit.Bucket(
        "agent:test-reserve", rpm=None, tpm=None, max_concurrent=None, budget_micro_usd=10_000, budget_period="day"
    )  # 0.01 USD
    acquire = async_to_sync(ratelimit.acquire)
    first = acquire([bucket], estimate=10, cost_estimate=6_000)
    second = acquire([bucket], estimate=10, cost_estimate=6_000)  # 0.006 reserved < 0.01: it may start
    assert second.headers["x-daarion-budget-remaining-usd"] == "0.004000"
    with pytest.raises(RateLimited):  # 0.012 reserved: spent, as far as a new call can tell
        acquire([bucket], estimate=10, cost_estimate=1)
    async_to_sync(ratelimit.settle)(first, actual_tokens=10, cost_usd="0.001")
    async_to_sync(ratelimit.settle)(second, actual_tokens=10, cost_usd="0.001")
    third = acquire([bucket], estimate=10, cost_estimate=1)  # the settles gave back 0.010 of it
    assert third.headers["x-daarion-budget-remaining-usd"] == "0.008000"
