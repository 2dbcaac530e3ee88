"""An answer's Usage, its cost, its usage record, and the per-day totals behind `/admin/usage`.

A day's totals are counters keyed by [view, project, key, model, metric]. Each request is counted
once in the "all" view (project null) and once per charged project in the "project" view (project
null when it charged none), so grouping by key, model or day counts a request once, and grouping
by project gives each project everything it was charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson

from gateway.config import Price
from gateway.limits.rules import NANO, nano

METRICS = ("requests", "input_tokens", "output_tokens", "total_tokens", "cost_usd")
GROUPS = ("project", "key", "model", "day")


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False  # the gateway's estimate: the answer ended without its usage
    cache_write_tokens: int = 0  # part of input_tokens: written to the prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_response(cls, response: Any) -> Usage | None:
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return None
        details = usage.get("input_tokens_details")
        if not isinstance(details, dict):
            details = {}
        return cls(
            input_tokens=_int(usage.get("input_tokens")),
            cached_tokens=_int(details.get("cached_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cache_write_tokens=_int(details.get("cache_write_tokens")),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def cost(price: Price | None, usage: Usage | None) -> float:
    """USD for an answer: input read from the prompt cache at the cached_input price, input
    written to it at cache_write (input when unset), the rest of input at input."""
    if price is None or usage is None:
        return 0.0
    return sum(cost_parts(price, usage))


def cost_parts(price: Price, usage: Usage) -> tuple[float, float]:
    """USD for an answer's input and for its output."""
    cached = min(max(usage.cached_tokens, 0), usage.input_tokens)
    written = min(max(usage.cache_write_tokens, 0), usage.input_tokens - cached)
    write_price = price.input if price.cache_write is None else price.cache_write
    plain = usage.input_tokens - cached - written
    usd_in = (plain * price.input + cached * price.cached_input + written * write_price) / 1e6
    return usd_in, usage.output_tokens * price.output / 1_000_000


def field(view: str, project: str | None, key: str, model: str, metric: str) -> str:
    return orjson.dumps([view, project, key, model, metric]).decode()


def totals(
    projects: Sequence[str], key: str, model: str, usage: Usage | None, usd: float
) -> dict[str, int]:
    """The counter increments of one request (cost in nano-USD)."""
    u = usage or Usage()
    counts = (1, u.input_tokens, u.output_tokens, u.total_tokens, nano(usd))
    return {
        name: n
        for names in _names(tuple(projects), key, model)
        for name, n in zip(names, counts, strict=True)
        if n
    }


@lru_cache(maxsize=4096)
def _names(projects: tuple[str, ...], key: str, model: str) -> tuple[tuple[str, ...], ...]:
    """The counter names of every view a request counts in, per metric (the same few keys,
    models and projects come back on every request: built once)."""
    views: list[tuple[str, str | None]] = [("all", None)]
    views += [("project", p) for p in dict.fromkeys(projects)] or [("project", None)]
    return tuple(
        tuple(field(view, project, key, model, m) for m in METRICS) for view, project in views
    )


def days(day_from: date, day_to: date) -> list[str]:
    return [(day_from + timedelta(n)).isoformat() for n in range((day_to - day_from).days + 1)]


def report(
    day_names: list[str], found: list[dict[str, int]], project: str | None, group_by: str
) -> list[dict[str, object]]:
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    groups: dict[str | None, dict[str, int]] = {}
    for day, counters in zip(day_names, found, strict=True):
        for name, value in counters.items():
            view, proj, key, model, metric = orjson.loads(name)
            if project is not None:
                wanted = view == "project" and proj == project
            else:
                wanted = view == ("project" if group_by == "project" else "all")
            if wanted:
                group = {"project": proj, "key": key, "model": model, "day": day}[group_by]
                row = groups.setdefault(group, dict.fromkeys(METRICS, 0))
                row[metric] += value
    rows: list[dict[str, object]] = []
    for group in sorted(groups, key=lambda g: (g is not None, g or "")):
        row = groups[group]
        rows.append(
            {
                group_by: group,
                **{m: row[m] for m in METRICS[:-1]},
                "cost_usd": row["cost_usd"] / NANO,
            }
        )
    return rows
