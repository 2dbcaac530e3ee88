"""MemoryLimiter: the Redis scripts' behaviour in one process (no Redis, tests, `open` fallback)."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable

from gateway.limits.backend import Charge, Reply, Settlement, Window
from gateway.limits.rules import Lease, Plan, Rate, nano


class MemoryLimiter:
    def __init__(
        self, window: Window, clock: Callable[[], float], *, stream_max: int = 100_000
    ) -> None:
        self.window = window
        self.clock = clock
        self.rates: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
        self.leases: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.spent: dict[tuple[str, str, str], int] = defaultdict(int)
        self.stream: deque[dict[str, str]] = deque(maxlen=stream_max)
        self.totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _now(self) -> tuple[int, int]:
        now = int(self.clock() * 1000)
        return now, now // self.window.bucket_ms

    def _live(self, rate: Rate, cur: int) -> dict[int, int]:
        buckets = self.rates[(rate.kind, rate.scope, rate.name)]
        for b in [b for b in buckets if b <= cur - self.window.buckets]:
            del buckets[b]
        return buckets

    def _held(self, lease: Lease, now: int) -> dict[str, int]:
        held = self.leases[(lease.scope, lease.name)]
        for lease_id in [i for i, expiry in held.items() if expiry <= now]:
            del held[lease_id]
        return held

    @staticmethod
    def _budget_key(c: Charge) -> tuple[str, str, str]:
        return (c.period_id, c.budget.scope, c.budget.name)

    async def admit(
        self, plan: Plan, amounts: list[int], charges: list[Charge], lease_id: str
    ) -> Reply:
        now, cur = self._now()
        nb, bucket_ms = self.window.buckets, self.window.bucket_ms
        used: list[int] = []
        wait: list[int] = []
        newest: list[int] = []
        ok = True
        for rate, amount in zip(plan.rates, amounts, strict=True):
            live = self._live(rate, cur)
            total = sum(live.values())
            used.append(total)
            newest.append(max(live, default=-1))
            wait.append(0)
            if total + amount > rate.limit:
                ok, wait[-1] = False, nb * bucket_ms
                left = total
                for b in sorted(live):
                    left -= live[b]
                    if left + amount <= rate.limit:
                        wait[-1] = (b + nb) * bucket_ms - now
                        break
        held = [len(self._held(lease, now)) for lease in plan.leases]
        ok = ok and all(n < lease.limit for n, lease in zip(held, plan.leases, strict=True))
        spent = [self.spent.get(self._budget_key(c), 0) for c in charges]
        ok = ok and all(s < nano(c.budget.limit_usd) for s, c in zip(spent, charges, strict=True))
        if ok:
            for rate, amount in zip(plan.rates, amounts, strict=True):
                if amount > 0:
                    buckets = self.rates[(rate.kind, rate.scope, rate.name)]
                    buckets[cur] = buckets.get(cur, 0) + amount
            for lease in plan.leases:
                self.leases[(lease.scope, lease.name)][lease_id] = now + self.window.lease_ms
        return Reply(
            ok, now, cur, tuple(used), tuple(wait), tuple(newest), tuple(held), tuple(spent)
        )

    async def settle(self, done: Settlement) -> None:
        _, cur = self._now()
        for rate, bucket, delta in done.adjust:
            buckets = self.rates[(rate.kind, rate.scope, rate.name)]
            if bucket > cur - self.window.buckets:
                buckets[bucket] = buckets.get(bucket, 0) + delta
                if buckets[bucket] <= 0:
                    del buckets[bucket]
            elif delta > 0:
                buckets[cur] = buckets.get(cur, 0) + delta
        for lease in done.leases:
            self.leases[(lease.scope, lease.name)].pop(done.lease_id, None)
        for c in done.charges:
            self.spent[self._budget_key(c)] += c.spend
        if done.record:
            self.stream.append(done.record)
        day = self.totals[done.day]
        for name, count in done.totals.items():
            day[name] += count

    async def renew(self, leases: tuple[Lease, ...], lease_id: str) -> None:
        now, _ = self._now()
        for lease in leases:
            held = self._held(lease, now)
            if lease_id in held:
                held[lease_id] = now + self.window.lease_ms

    async def day_totals(self, days: list[str]) -> list[dict[str, int]]:
        return [dict(self.totals.get(day, {})) for day in days]
