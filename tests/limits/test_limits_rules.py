"""Pure pieces of the limits package: Go durations, budget periods, plans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.limits import ModelLimits, ProjectLimits, go_duration
from gateway.limits.rules import period_window, plan_for
from tests.limits.limits_helpers import subject


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (20, "20ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (59_520, "59.52s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (61_500, "1m1.5s"),
        (3_600_000, "1h0m0s"),
    ],
)
def test_go_duration_reads_like_openai(ms: int, text: str) -> None:
    assert go_duration(ms) == text


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "ident", "left_s"),
    [
        ("day", "2024-06-01T12:00:00", "2024-06-01", 12 * 3600),
        ("week", "2024-12-31T00:00:00", "2025-W01", 6 * 86400),  # ISO: this week belongs to 2025
        ("week", "2024-06-03T00:00:00", "2024-W23", 7 * 86400),  # Monday starts a week
        ("month", "2024-02-29T23:00:00", "2024-02", 3600),
        ("month", "2024-12-15T00:00:00", "2024-12", 17 * 86400),
    ],
    ids=["day", "week-across-years", "week-monday", "month-leap", "month-december"],
)
def test_budget_periods_are_utc_calendar_periods(
    period: str, now: str, ident: str, left_s: int
) -> None:
    assert period_window(period, at(now)) == (ident, left_s + 86400)


def test_total_period_is_kept_forever() -> None:
    assert period_window("total", at("2024-06-01T00:00:00")) == ("total", None)


def test_plan_lists_only_limits_that_apply() -> None:
    who = subject(rpm=10, budget_usd=5.0, projects=("p1", "p2", "p1"))
    plan = plan_for(
        who,
        {"p1": ProjectLimits(max_concurrent=3), "p3": ProjectLimits(rpm=1)},
        {"gpt-test": ModelLimits(tpm=100)},
    )
    assert [(r.scope, r.name, r.kind, r.limit) for r in plan.rates] == [
        ("key", "team-a", "requests", 10),
        ("model", "gpt-test", "tokens", 100),
    ]
    assert [(x.scope, x.name, x.limit) for x in plan.leases] == [("project", "p1", 3)]
    assert [(b.scope, b.name, b.limit_usd, b.period) for b in plan.budgets] == [
        ("key", "team-a", 5.0, "month")
    ]
    assert plan_for(subject(), {}, {}).empty
