"""The usage dashboard's reads: per-day sums per agent and per model, percentiles, totals, the
chart series (missing days, top groups folded into "(other)") and the window's edges."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest

from apps.llm.models import UsageRecord
from apps.llm.usage_reports import (
    OTHER,
    UsageWindow,
    chart_series,
    usage_by_day,
    usage_dashboard_data,
    usage_totals,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=dt_timezone.utc)
TODAY = NOW.replace(hour=9)
YESTERDAY = TODAY - timedelta(days=1)


def record(
    when: datetime,
    *,
    agent: str = "agent:sofia",
    model: str = "gpt-4.1-mini",
    status: str = "ok",
    prompt: int = 10,
    completion: int = 5,
    cost: str = "0.001",
    latency: float = 100.0,
    microdao: str = "microdao:7",
) -> UsageRecord:
    return UsageRecord.objects.create(
        agent_id=agent,
        microdao_id=microdao,
        logical_model=model,
        provider="fake",
        status=status,
        error_type="" if status == "ok" else "upstream_error",
        latency_ms=latency,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost=Decimal(cost),
        created_at=when,
    )


@pytest.fixture
def usage(db) -> None:
    # Today: sofia 2 calls on gpt (latency 100, 300), 1 failed call on deepseek; helix 1 on gpt.
    record(TODAY, latency=100)
    record(TODAY + timedelta(minutes=5), latency=300, prompt=20, completion=10, cost="0.002")
    record(TODAY, model="deepseek-r1", status="error", prompt=0, completion=0, cost="0", latency=50)
    record(TODAY, agent="agent:helix", latency=200, cost="0.004", microdao="microdao:9")
    # Yesterday: sofia 1 call.
    record(YESTERDAY, latency=400, prompt=7, completion=3, cost="0.0005")
    # Outside a 7-day window, and a call with no agent.
    record(TODAY - timedelta(days=8), latency=999)
    record(TODAY, agent="", latency=10, prompt=1, completion=1, cost="0")


def by_key(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(row["day"].isoformat(), row["group"]): row for row in rows}


def test_window_is_whole_utc_days_ending_today() -> None:
    window = UsageWindow.last_days(7, now=NOW)
    assert window.since == datetime(2026, 11, 17, tzinfo=dt_timezone.utc)
    assert window.until == datetime(2026, 11, 24, tzinfo=dt_timezone.utc)
    assert [d.isoformat() for d in window.day_list()][::6] == ["2026-11-17", "2026-11-23"]


def test_sums_per_day_per_agent(usage) -> None:
    rows = by_key(usage_by_day(window=UsageWindow.last_days(7, now=NOW), group_by="agent"))
    assert set(rows) == {
        ("2026-11-23", "agent:sofia"),
        ("2026-11-23", "agent:helix"),
        ("2026-11-23", "(no agent)"),
        ("2026-11-22", "agent:sofia"),
    }
    sofia = rows[("2026-11-23", "agent:sofia")]
    assert (sofia["calls"], sofia["errors"]) == (3, 1)
    assert (sofia["prompt_tokens"], sofia["completion_tokens"], sofia["total_tokens"]) == (30, 15, 45)
    assert sofia["cost"] == Decimal("0.003")
    assert sofia["latency_avg_ms"] == 150.0
    assert sofia["latency_p50_ms"] == 100.0  # percentile_cont over 50, 100, 300
    assert sofia["latency_p95_ms"] == pytest.approx(280.0)
    assert rows[("2026-11-22", "agent:sofia")]["total_tokens"] == 10
    assert rows[("2026-11-23", "agent:helix")]["cost"] == Decimal("0.004")


def test_sums_per_day_per_model(usage) -> None:
    rows = by_key(usage_by_day(window=UsageWindow.last_days(7, now=NOW), group_by="model"))
    gpt = rows[("2026-11-23", "gpt-4.1-mini")]
    assert (gpt["calls"], gpt["errors"], gpt["total_tokens"]) == (4, 0, 15 + 30 + 15 + 2)
    assert gpt["cost"] == Decimal("0.007")
    deepseek = rows[("2026-11-23", "deepseek-r1")]
    assert (deepseek["calls"], deepseek["errors"], deepseek["total_tokens"]) == (1, 1, 0)
    assert rows[("2026-11-22", "gpt-4.1-mini")]["calls"] == 1


def test_filters_by_agent_and_microdao(usage) -> None:
    window = UsageWindow.last_days(7, now=NOW, agent_id="agent:sofia")
    assert usage_totals(window=window)["calls"] == 4
    window = UsageWindow.last_days(7, now=NOW, microdao_id="microdao:9")
    assert usage_totals(window=window)["calls"] == 1


def test_totals_and_longer_window(usage) -> None:
    week = usage_totals(window=UsageWindow.last_days(7, now=NOW))
    assert (week["calls"], week["errors"], week["total_tokens"]) == (6, 1, 45 + 15 + 10 + 2)
    assert week["cost"] == Decimal("0.0075")
    month = usage_totals(window=UsageWindow.last_days(30, now=NOW))
    assert month["calls"] == 7


def test_empty_window_gives_zeros(db) -> None:
    totals = usage_totals(window=UsageWindow.last_days(7, now=NOW))
    assert (totals["calls"], totals["total_tokens"], totals["cost"], totals["latency_p95_ms"]) == (0, 0, 0, None)
    data = usage_dashboard_data(days=7, group_by="model", now=NOW)
    assert data["chart"]["groups"] == [] and len(data["daily"]) == 7


def test_unknown_grouping_is_refused(db) -> None:
    with pytest.raises(ValueError, match="cannot group usage by"):
        usage_by_day(window=UsageWindow.last_days(7, now=NOW), group_by="channel")


def test_chart_series_aligns_days_and_folds_small_groups(usage) -> None:
    window = UsageWindow.last_days(7, now=NOW)
    chart = chart_series(window=window, rows=usage_by_day(window=window, group_by="agent"), top=1)
    assert chart["labels"][0] == "2026-11-17" and chart["labels"][-1] == "2026-11-23"
    assert chart["groups"] == ["agent:sofia", OTHER]
    calls = chart["series"]["calls"]
    assert calls["agent:sofia"] == [0, 0, 0, 0, 0, 1, 3]
    assert calls[OTHER] == [0, 0, 0, 0, 0, 0, 2]  # helix + the call without an agent
    assert chart["series"]["cost"][OTHER][-1] == pytest.approx(0.004)
    # Percentiles cannot be summed: no "(other)" latency line, gaps where a day had no calls.
    assert OTHER not in chart["series"]["latency_p95_ms"]
    assert chart["series"]["latency_p50_ms"]["agent:sofia"][:5] == [None] * 5


def test_dashboard_data_is_json_ready(usage) -> None:
    import json

    data = usage_dashboard_data(days=7, group_by="model", now=NOW)
    json.dumps(data)  # no Decimal or date left
    assert data["totals"]["calls"] == 6
    assert data["daily"][-1]["day"] == "2026-11-23" and data["daily"][-1]["calls"] == 5
    assert data["daily"][0]["calls"] == 0
    assert data["chart"]["groups"] == ["gpt-4.1-mini", "deepseek-r1"]
