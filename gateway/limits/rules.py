"""What a request is charged against: Subject, project and model limits, the Plan of checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.config import KeySettings, ModelLimits, Price, ProjectLimits

PERIODS = ("day", "week", "month", "total")
NANO = 1_000_000_000  # money is counted in integer nano-USD: exact sums, INCRBY in Redis


def nano(usd: float) -> int:
    return round(usd * NANO)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who and what a request charges."""

    key: KeySettings
    projects: tuple[str, ...]
    model: str
    price: Price | None


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests (kind "requests") or tokens ("tokens") per window for one scope."""

    scope: str  # key | project | model
    name: str
    kind: str
    limit: int


@dataclass(frozen=True, slots=True)
class Lease:
    scope: str
    name: str
    limit: int


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str
    name: str
    limit_usd: float
    period: str


@dataclass(frozen=True, slots=True)
class Plan:
    rates: tuple[Rate, ...] = ()
    leases: tuple[Lease, ...] = ()
    budgets: tuple[Budget, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.rates or self.leases or self.budgets)

    def amounts(self, estimated_tokens: int) -> list[int]:
        """What each rate check charges: one request, or the estimated tokens."""
        return [1 if r.kind == "requests" else estimated_tokens for r in self.rates]


def plan_for(
    subject: Subject, projects: Mapping[str, ProjectLimits], models: Mapping[str, ModelLimits]
) -> Plan:
    rates: list[Rate] = []
    leases: list[Lease] = []
    budgets: list[Budget] = []

    def add(
        scope: str,
        name: str,
        rpm: int | None,
        tpm: int | None,
        concurrent: int | None = None,
        usd: float | None = None,
        period: str = "",
    ) -> None:
        if rpm is not None:
            rates.append(Rate(scope, name, "requests", rpm))
        if tpm is not None:
            rates.append(Rate(scope, name, "tokens", tpm))
        if concurrent is not None:
            leases.append(Lease(scope, name, concurrent))
        if usd is not None:
            budgets.append(Budget(scope, name, usd, period))

    key = subject.key
    add("key", key.id, key.rpm, key.tpm, key.max_concurrent, key.budget_usd, key.budget_period)
    for name in dict.fromkeys(subject.projects):
        p = projects.get(name)
        if p is not None:
            add("project", name, p.rpm, p.tpm, p.max_concurrent, p.budget_usd, p.budget_period)
    m = models.get(subject.model)
    if m is not None:
        add("model", subject.model, m.rpm, m.tpm)
    return Plan(tuple(rates), tuple(leases), tuple(budgets))


def _bounds(period: str, now: float) -> tuple[str, float, float]:
    """The UTC day, ISO week or calendar month holding `now`: id, start and end timestamps."""
    at = datetime.fromtimestamp(now, UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        ident, start, end = day.strftime("%Y-%m-%d"), day, day + timedelta(days=1)
    elif period == "week":
        year, week, weekday = at.isocalendar()
        start = day - timedelta(days=weekday - 1)
        ident, end = f"{year}-W{week:02d}", start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        ident = start.strftime("%Y-%m")
    return ident, start.timestamp(), end.timestamp()


class Periods:
    """Budget periods and usage days, remembered until they end (asked on every request)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float, float]] = {}

    def _find(self, period: str, now: float) -> tuple[str, float]:
        known = self._known.get(period)
        if known is None or not known[1] <= now < known[2]:
            known = self._known[period] = _bounds(period, now)
        return known[0], known[2]

    def window(self, period: str, now: float) -> tuple[str, int | None]:
        """The period's id, and seconds to keep its counter: a day past its end (None: ever)."""
        if period == "total":
            return "total", None
        ident, end = self._find(period, now)
        return ident, int(end - now) + 86400

    def day(self, now: float) -> str:
        return self._find("day", now)[0]


def period_window(period: str, now: float) -> tuple[str, int | None]:
    return Periods().window(period, now)


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
