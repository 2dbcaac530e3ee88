"""The seam between Governor and its stores (Redis, memory): what they are asked and answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.limits.rules import Budget, Lease, Plan, Rate


@dataclass(frozen=True, slots=True)
class Window:
    """Sliding windows of `buckets` sub-buckets; leases expire after lease_ms unless renewed."""

    window_ms: int
    lease_ms: int
    buckets: int = 60

    @property
    def bucket_ms(self) -> int:
        return max(1, self.window_ms // self.buckets)


@dataclass(frozen=True, slots=True)
class Charge:
    """A budget to check at admit or to add spend to at settle, in its current period."""

    budget: Budget
    period_id: str
    ttl_s: int | None
    spend: int = 0  # nano-USD


@dataclass(frozen=True, slots=True)
class Reply:
    """The state an admit saw, before it reserved anything (and it reserved only if admitted)."""

    admitted: bool
    now_ms: int
    bucket: int  # the sub-bucket index the reservations went to
    used: tuple[int, ...]  # per rate: used in the window
    wait_ms: tuple[int, ...]  # per rate: ms until this request would fit (0: fits now)
    newest: tuple[int, ...]  # per rate: newest sub-bucket holding usage, -1 for none
    held: tuple[int, ...]  # per lease: live leases
    spent: tuple[int, ...]  # per budget: nano-USD spent in the period


@dataclass(slots=True)
class Settlement:
    """All that settle changes; reservations and accounting may go to different stores."""

    adjust: tuple[tuple[Rate, int, int], ...] = ()  # token rates: (rule, bucket reserved, delta)
    leases: tuple[Lease, ...] = ()
    lease_id: str = ""
    charges: tuple[Charge, ...] = ()
    record: dict[str, str] = field(default_factory=dict)  # one usage-stream entry; {} = none
    day: str = ""
    totals: dict[str, int] = field(default_factory=dict)  # usage-totals field -> increment

    def reservations(self) -> Settlement:
        return Settlement(adjust=self.adjust, leases=self.leases, lease_id=self.lease_id)

    def accounting(self) -> Settlement:
        return Settlement(
            charges=self.charges, record=self.record, day=self.day, totals=self.totals
        )


class Backend(Protocol):
    async def admit(
        self, plan: Plan, amounts: list[int], charges: list[Charge], lease_id: str
    ) -> Reply: ...

    async def settle(self, done: Settlement) -> None: ...

    async def renew(self, leases: tuple[Lease, ...], lease_id: str) -> None: ...

    async def day_totals(self, days: list[str]) -> list[dict[str, int]]: ...
