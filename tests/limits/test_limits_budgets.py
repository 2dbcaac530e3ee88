"""Budgets per key and per project, per day, ISO week, calendar month (UTC) or in total."""

from __future__ import annotations

import pytest

from gateway.config import ProjectLimits
from gateway.limits import QuotaExceededError, Ticket
from gateway.limits.usage import Usage
from tests.limits.limits_helpers import Harness, error_body, outcome, settle, subject

# 1M input tokens at $2.0: one request costs $2.
DEAR = Usage(input_tokens=1_000_000)


async def test_key_budget_refuses_once_spent(harness: Harness) -> None:
    governor, who = harness.governor(), subject(budget_usd=5.0, budget_period="total")
    for _ in range(2):
        assert await settle(governor, await governor.admit(who, 0), DEAR) == 2.0
    crossing = await governor.admit(who, 0)  # $4 spent < $5: admitted, and it crosses
    assert await settle(governor, crossing, DEAR) == 2.0
    error = await outcome(governor.admit(who, 0))
    assert isinstance(error, QuotaExceededError)
    assert error.status == 429
    assert error_body(error)["type"] == "insufficient_quota"
    assert error_body(error)["code"] == "insufficient_quota"
    assert "has spent $6.00 of its $5.00 budget in total" in error.message
    headers = error.response_headers()
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers


async def test_project_budget_is_shared_by_keys(harness: Harness) -> None:
    governor = harness.governor(projects={"p1": ProjectLimits(budget_usd=3.0, budget_period="day")})
    await settle(governor, await governor.admit(subject("k1", ("p1",)), 0), DEAR)
    await settle(governor, await governor.admit(subject("k2", ("p1",)), 0), DEAR)
    error = await outcome(governor.admit(subject("k3", ("p1",)), 0))
    assert isinstance(error, QuotaExceededError)
    assert "project 'p1'" in error.message
    assert isinstance(await outcome(governor.admit(subject("k3", ("p2",)), 0)), Ticket)


@pytest.mark.parametrize(
    ("period", "still", "reset"),
    [
        ("day", 11 * 3600, 12 * 3600 + 1),  # Saturday noon: the day ends at midnight
        ("week", 35 * 3600, 36 * 3600 + 1),  # ... the ISO week on Monday 00:00
        ("month", 29 * 86400 + 11 * 3600, 29 * 86400 + 12 * 3600 + 1),  # ... June on July 1st
    ],
    ids=["day", "week", "month"],
)
async def test_budget_period_starts_afresh(
    harness: Harness, period: str, still: int, reset: int
) -> None:
    governor, who = harness.governor(), subject(budget_usd=1.0, budget_period=period)
    if harness.kind == "redis":  # budget periods follow the governor's clock
        harness.clock.now = 1_717_243_200.0
    await settle(governor, await governor.admit(who, 0), DEAR)
    harness.clock.now += still
    assert isinstance(await outcome(governor.admit(who, 0)), QuotaExceededError)
    harness.clock.now += reset - still
    assert isinstance(await outcome(governor.admit(who, 0)), Ticket)


async def test_total_budget_never_resets(harness: Harness) -> None:
    governor, who = harness.governor(), subject(budget_usd=1.0, budget_period="total")
    await settle(governor, await governor.admit(who, 0), DEAR)
    harness.clock.now += 400 * 86400
    assert isinstance(await outcome(governor.admit(who, 0)), QuotaExceededError)


async def test_cheap_requests_do_not_exhaust(harness: Harness) -> None:
    governor, who = harness.governor(), subject(budget_usd=0.001, budget_period="month")
    for _ in range(4):  # $0.00028 each: the fourth crosses $0.001
        spent = await settle(
            governor, await governor.admit(who, 0), Usage(input_tokens=100, output_tokens=10)
        )
        assert spent == pytest.approx(0.00028)
    error = await outcome(governor.admit(who, 0))
    assert isinstance(error, QuotaExceededError)
    assert "has spent $0.00112 of its $0.001 budget for the month " in error.message
