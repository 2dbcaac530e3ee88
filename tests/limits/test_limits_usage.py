"""Cost, the per-request usage stream, and usage_report totals grouped four ways."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from gateway.config import Price, Settings
from gateway.limits import Governor
from gateway.limits.rules import utc_day
from gateway.limits.usage import Usage
from tests.limits.limits_helpers import PRICE, Harness, settle, subject


def test_cost_bills_cached_input_at_its_price() -> None:
    gov = Governor(Settings(), None, "x:")
    usage = Usage(input_tokens=1000, cached_tokens=400, output_tokens=100)
    assert gov.cost(PRICE, usage) == pytest.approx((600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6)
    assert gov.cost(None, usage) == 0.0
    assert gov.cost(PRICE, None) == 0.0
    assert gov.cost(Price(input=1.0), Usage(input_tokens=10, cached_tokens=50)) == 0.0


async def traffic(governor: Governor) -> None:
    """Four requests: two keys, two projects (one request charges both), two models."""
    calls = [
        (subject("k1", ("p1",)), Usage(100, 0, 10)),
        (subject("k1", ("p1", "p2")), Usage(200, 0, 20)),
        (subject("k2", ("p2",), model="other", price=None), Usage(300, 0, 30)),
        (subject("k2", ()), None),
    ]
    for who, usage in calls:
        await settle(governor, await governor.admit(who, 50), usage)


def totals(rows: list[dict[str, object]], field: str) -> dict[object, tuple[object, ...]]:
    return {
        r[field]: (r["requests"], r["input_tokens"], r["output_tokens"], r["total_tokens"])
        for r in rows
    }


async def test_report_groups_and_adds_up(harness: Harness) -> None:
    governor = harness.governor()
    await traffic(governor)
    day = date.fromisoformat(utc_day(harness.clock.now))

    async def report(group_by: str, project: str | None = None) -> list[dict[str, object]]:
        return await governor.usage_report(project, day, day, group_by)

    assert totals(await report("key"), "key") == {"k1": (2, 300, 30, 330), "k2": (2, 300, 30, 330)}
    assert totals(await report("model"), "model") == {
        "gpt-test": (3, 300, 30, 330),
        "other": (1, 300, 30, 330),
    }
    assert totals(await report("day"), "day") == {day.isoformat(): (4, 600, 60, 660)}
    assert totals(await report("project"), "project") == {
        None: (1, 0, 0, 0),
        "p1": (2, 300, 30, 330),
        "p2": (2, 500, 50, 550),
    }
    assert totals(await report("key", "p2"), "key") == {
        "k1": (1, 200, 20, 220),
        "k2": (1, 300, 30, 330),
    }
    costs = {r["key"]: r["cost_usd"] for r in await report("key")}
    assert costs["k1"] == pytest.approx((300 * 2.0 + 30 * 8.0) / 1e6)
    assert costs["k2"] == 0.0


async def test_report_covers_an_inclusive_day_range(harness: Harness) -> None:
    governor = harness.governor()
    first = date.fromisoformat(utc_day(harness.clock.now))
    await settle(governor, await governor.admit(subject(), 0), Usage(10, 0, 1))
    harness.clock.now += 86400
    await settle(governor, await governor.admit(subject(), 0), Usage(20, 0, 2))
    second = date.fromisoformat(utc_day(harness.clock.now))
    rows = await governor.usage_report(None, first, second, "day")
    assert [(r["day"], r["input_tokens"]) for r in rows] == [
        (first.isoformat(), 10),
        (second.isoformat(), 20),
    ]
    only_first = await governor.usage_report(None, first, first, "key")
    assert totals(only_first, "key") == {"team-a": (1, 10, 1, 11)}
    with pytest.raises(ValueError, match="group_by"):
        await governor.usage_report(None, first, first, "region")


async def test_each_request_is_one_usage_record(harness: Harness) -> None:
    governor = harness.governor(stream_max=100)
    ticket = await governor.admit(subject("k1", ("p1", "p2")), 50)
    await settle(governor, ticket, Usage(100, 40, 10), status=200)
    if governor.redis is None:
        records = list(governor.memory.stream)
    else:
        client: Any = governor.redis.client
        raw = await client.xrange(f"{harness.prefix}rl:{{limits}}:usage")
        records = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]
    assert len(records) == 1
    record = records[0]
    assert {
        k: record[k]
        for k in (
            "key",
            "projects",
            "model",
            "provider",
            "upstream_model",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "total_tokens",
            "status",
            "latency_ms",
        )
    } == {
        "key": "k1",
        "projects": "p1,p2",
        "model": "gpt-test",
        "provider": "stub",
        "upstream_model": "gpt-test-upstream",
        "input_tokens": "100",
        "cached_tokens": "40",
        "output_tokens": "10",
        "total_tokens": "110",
        "status": "200",
        "latency_ms": "12.5",
    }
    assert float(record["cost_usd"]) == pytest.approx((60 * 2 + 40 * 0.5 + 10 * 8) / 1e6)
    assert abs(float(record["time"]) - harness.clock.now) < 1


async def test_usage_stream_is_bounded(harness: Harness) -> None:
    governor = harness.governor(stream_max=10)
    for _ in range(300):
        await settle(governor, await governor.admit(subject(), 0), Usage(1, 0, 1))
    if governor.redis is None:
        assert len(governor.memory.stream) == 10
    else:  # MAXLEN ~ trims whole stream nodes (100 entries), so roughly
        length = await governor.redis.client.xlen(f"{harness.prefix}rl:{{limits}}:usage")
        assert length < 300
