"""The x-ratelimit-* headers: for each kind, the rule with the least room left, its reset."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.limits.backend import Reply, Window
from gateway.limits.headers import go_duration, rate_headers
from gateway.limits.rules import Plan, Rate


def reference(plan: Plan, reply: Reply, amounts: Sequence[int], window: Window) -> dict[str, str]:
    """The headers as defined: per kind in order, the first rule with the fewest remaining."""
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        best: tuple[int, int, int] | None = None
        for i, rate in enumerate(plan.rates):
            if rate.kind != kind:
                continue
            taken = amounts[i] if reply.admitted else 0
            newest = reply.bucket if taken else reply.newest[i]
            remaining = max(0, rate.limit - reply.used[i] - taken)
            reset = max(0, (newest + window.buckets) * window.bucket_ms - reply.now_ms)
            if best is None or remaining < best[1]:
                best = (rate.limit, remaining, reset if newest >= 0 else 0)
        if best is not None:
            out[f"x-ratelimit-limit-{kind}"] = str(best[0])
            out[f"x-ratelimit-remaining-{kind}"] = str(best[1])
            out[f"x-ratelimit-reset-{kind}"] = go_duration(best[2])
    return out


def test_headers_name_the_tightest_rule_of_each_kind_in_order() -> None:
    plan = Plan(
        rates=(
            Rate("key", "k", "tokens", 1000),
            Rate("key", "k", "requests", 10),
            Rate("project", "p", "requests", 5),
            Rate("project", "p", "tokens", 5000),
        )
    )
    window = Window(window_ms=60_000, lease_ms=60_000)  # 1 s buckets
    reply = Reply(True, 100_500, 100, (100, 2, 4, 4950), (0, 0, 0, 0), (99, 99, 90, 98), (), ())
    headers = rate_headers(plan, reply, [30, 1, 1, 30], window)
    assert list(headers.items()) == [
        ("x-ratelimit-limit-requests", "5"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "59.5s"),
        ("x-ratelimit-limit-tokens", "5000"),
        ("x-ratelimit-remaining-tokens", "20"),
        ("x-ratelimit-reset-tokens", "59.5s"),
    ]


def test_headers_match_the_definition_for_any_usage() -> None:
    rng = random.Random(7)
    window = Window(window_ms=60_000, lease_ms=30_000, buckets=rng.choice((6, 60)))
    for _ in range(3000):
        rates = tuple(
            Rate("key", f"r{i}", rng.choice(("requests", "tokens")), rng.randint(0, 50))
            for i in range(rng.randint(0, 4))
        )
        n = len(rates)
        now = rng.randint(0, 10**7)
        cur = now // window.bucket_ms
        reply = Reply(
            rng.random() < 0.7,
            now,
            cur,
            tuple(rng.randint(0, 60) for _ in range(n)),
            (0,) * n,
            tuple(rng.choice((-1, cur, cur - 1, cur - rng.randint(0, 80))) for _ in range(n)),
            (),
            (),
        )
        amounts = [rng.choice((0, 1, rng.randint(0, 40))) for _ in range(n)]
        plan = Plan(rates=rates)
        got = rate_headers(plan, reply, amounts, window)
        want = reference(plan, reply, amounts, window)
        assert list(got.items()) == list(want.items()), (plan, reply, amounts)


def go_reference(ms: int) -> str:
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else "") + seconds + "s"


def test_go_durations_read_the_same_below_and_above_a_minute() -> None:
    for ms in [*range(-2, 70_001), *range(70_000, 8_000_000, 997)]:
        assert go_duration(ms) == go_reference(ms), ms
