"""Reads behind the usage dashboard: per-day series of calls, tokens, cost, latency and errors,
grouped by agent or by logical model, over a time range. One GROUP BY query per series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.db.models import Aggregate, Avg, Count, FloatField, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.llm.choices import UsageStatus
from apps.llm.models import UsageRecord

# What the dashboard may group by: the query parameter's value -> the UsageRecord field.
GROUPINGS = {"agent": "agent_id", "model": "logical_model"}
RANGES = (7, 30, 90)
# The dashboard draws this many groups by name; the rest are summed into one "other" series.
TOP_GROUPS = 8
OTHER = "(other)"
NO_AGENT = "(no agent)"


class Percentile(Aggregate):
    """PostgreSQL's `percentile_cont(q) WITHIN GROUP (ORDER BY expr)`: an interpolated
    percentile computed by the database, so no row leaves it."""

    function = "percentile_cont"
    name = "Percentile"
    output_field = FloatField()
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: str, percentile: float, **extra: Any) -> None:
        if not 0 <= percentile <= 1:
            raise ValueError("percentile must be within [0, 1]")
        super().__init__(expression, percentile=float(percentile), **extra)


@dataclass(frozen=True)
class UsageWindow:
    """A range of whole UTC days ending today, with optional agent / microDAO filters."""

    days: int
    first_day: date
    since: datetime
    until: datetime
    agent_id: str = ""
    microdao_id: str = ""

    @classmethod
    def last_days(cls, days: int, *, now: datetime | None = None, agent_id: str = "", microdao_id: str = "") -> UsageWindow:
        now = now or timezone.now()
        today = now.astimezone(dt_timezone.utc).date()
        first_day = today - timedelta(days=days - 1)
        since = datetime.combine(first_day, time.min, tzinfo=dt_timezone.utc)
        until = datetime.combine(today + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)
        return cls(days, first_day, since, until, agent_id, microdao_id)

    def day_list(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range(self.days)]


def _rows(window: UsageWindow) -> QuerySet[UsageRecord]:
    # A time range alone uses llm_usage_time; with an agent or microDAO it narrows through the
    # (agent_id, created_at) / (microdao_id, created_at) indexes.
    rows = UsageRecord.objects.filter(created_at__gte=window.since, created_at__lt=window.until)
    if window.agent_id:
        rows = rows.filter(agent_id=window.agent_id)
    if window.microdao_id:
        rows = rows.filter(microdao_id=window.microdao_id)
    return rows


_METRICS = {
    "calls": Count("id"),
    "errors": Count("id", filter=~Q(status=UsageStatus.OK)),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "total_tokens": Sum("total_tokens"),
    "cost": Sum("cost"),
    "latency_avg_ms": Avg("latency_ms"),
    "latency_p50_ms": Percentile("latency_ms", 0.5),
    "latency_p95_ms": Percentile("latency_ms", 0.95),
}


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Sums of no rows are None in SQL; the dashboard wants numbers."""
    for name in ("calls", "errors", "prompt_tokens", "completion_tokens", "total_tokens"):
        row[name] = int(row.get(name) or 0)
    row["cost"] = row.get("cost") or Decimal(0)
    for name in ("latency_avg_ms", "latency_p50_ms", "latency_p95_ms"):
        value = row.get(name)
        row[name] = None if value is None else round(float(value), 3)
    return row


def usage_by_day(*, window: UsageWindow, group_by: str) -> list[dict[str, Any]]:
    """One row per (day, group) that has calls: the metrics above, `day` and `group`.

    `group_by` is a key of GROUPINGS ("agent" or "model"); one GROUP BY query.
    """
    if group_by not in GROUPINGS:
        raise ValueError(f"cannot group usage by {group_by!r}; use one of {sorted(GROUPINGS)}")
    field = GROUPINGS[group_by]
    rows = (
        _rows(window)
        .annotate(day=TruncDate("created_at", tzinfo=dt_timezone.utc))
        .values("day", field)
        .annotate(**_METRICS)
        .order_by("day", field)
    )
    out = []
    for row in rows:
        row = _clean(dict(row))
        row["group"] = row.pop(field) or (NO_AGENT if group_by == "agent" else "")
        out.append(row)
    return out


def usage_totals(*, window: UsageWindow) -> dict[str, Any]:
    """The whole window in one row (one query)."""
    return _clean(dict(_rows(window).aggregate(**_METRICS)))


def usage_daily_totals_all(*, window: UsageWindow) -> list[dict[str, Any]]:
    """One row per day with calls, over every group (one query)."""
    rows = (
        _rows(window)
        .annotate(day=TruncDate("created_at", tzinfo=dt_timezone.utc))
        .values("day")
        .annotate(**_METRICS)
        .order_by("day")
    )
    return [_clean(dict(row)) for row in rows]


# Summable metrics can be folded into "(other)"; percentiles cannot, so other's are left out.
_SUMMABLE = ("calls", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost")
CHART_METRICS = ("calls", "total_tokens", "cost", "errors", "latency_p50_ms", "latency_p95_ms")


def chart_series(*, window: UsageWindow, rows: list[dict[str, Any]], top: int = TOP_GROUPS) -> dict[str, Any]:
    """Per-day rows reshaped for the charts: labels (days) and, per metric, one list of values
    per group, aligned with the labels. Groups beyond the `top` busiest are summed as OTHER."""
    days = window.day_list()
    index = {day: i for i, day in enumerate(days)}
    calls_by_group: dict[str, int] = {}
    for row in rows:
        calls_by_group[row["group"]] = calls_by_group.get(row["group"], 0) + row["calls"]
    ranked = sorted(calls_by_group, key=lambda g: (-calls_by_group[g], g))
    named, folded = ranked[:top], set(ranked[top:])
    groups = named + ([OTHER] if folded else [])
    series: dict[str, dict[str, list[float | None]]] = {
        metric: {g: [None if metric.startswith("latency") else 0] * len(days) for g in groups} for metric in CHART_METRICS
    }
    for row in rows:
        position = index.get(row["day"])
        if position is None:
            continue
        group = OTHER if row["group"] in folded else row["group"]
        for metric in CHART_METRICS:
            if metric.startswith("latency"):
                if group != OTHER:
                    series[metric][group][position] = row[metric]
            else:
                value = float(row[metric]) if metric == "cost" else row[metric]
                series[metric][group][position] += value  # type: ignore[operator]
    if folded:
        for metric in ("latency_p50_ms", "latency_p95_ms"):
            series[metric].pop(OTHER, None)
    return {"labels": [d.isoformat() for d in days], "groups": groups, "series": series}


def usage_dashboard_data(
    *, days: int, group_by: str, agent_id: str = "", microdao_id: str = "", now: datetime | None = None
) -> dict[str, Any]:
    """Everything the dashboard shows, JSON-ready: the window, totals, per-day totals and the
    per-group chart series. Three queries."""
    window = UsageWindow.last_days(days, now=now, agent_id=agent_id, microdao_id=microdao_id)
    rows = usage_by_day(window=window, group_by=group_by)
    totals = usage_totals(window=window)
    daily = {row["day"]: row for row in usage_daily_totals_all(window=window)}
    return {
        "days": days,
        "group_by": group_by,
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "filters": {"agent_id": agent_id, "microdao_id": microdao_id},
        "totals": _jsonable(totals),
        "daily": [_jsonable({"day": d, **_empty_day(), **daily.get(d, {})}) for d in window.day_list()],
        "rows": [_jsonable(row) for row in rows],
        "chart": chart_series(window=window, rows=rows),
    }


def _empty_day() -> dict[str, Any]:
    return {**{name: 0 for name in _SUMMABLE}, "latency_avg_ms": None, "latency_p50_ms": None, "latency_p95_ms": None}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if isinstance(value, Decimal):
            value = float(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[name] = value
    return out
