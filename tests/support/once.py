"""What a request left behind, to check it was logged, counted and settled exactly once: its
access lines, the request counter's moves, its usage records and the leases it still holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.keys import DEPS
from tests.support.stream_faults import AccessLines, wait_for

Client = TestClient[Any, Any]


def requests_counted(operation: str) -> Counter[str]:
    """`gateway_requests_total` of one operation, by status class, summed over the rest."""
    counted: Counter[str] = Counter()  # counter samples are floats holding whole numbers
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "gateway_requests_total" and (
                sample.labels.get("operation") == operation
            ):
                counted[sample.labels["status_class"]] += int(sample.value)
    return counted


class Ledger:
    """One gateway's requests of one operation, from the moment it was made."""

    def __init__(self, gateway: Client, access: AccessLines, operation: str) -> None:
        self.gateway = gateway
        self.access = access
        self.operation = operation
        self._before = requests_counted(operation)

    def lines(self) -> list[dict[str, Any]]:
        return [line for line in self.access.lines if line.get("operation") == self.operation]

    def counted(self) -> dict[str, int]:
        """How far the request counter moved, by status class (classes that did not move left
        out)."""
        moved = requests_counted(self.operation)
        moved.subtract(self._before)
        return {k: v for k, v in moved.items() if v}

    def records(self) -> list[dict[str, str]]:
        """The usage records (no Redis here: the governor's in-memory stream)."""
        return list(self.gateway.app[DEPS].governor.memory.stream)

    def held(self) -> int:
        """Concurrency leases still held: a settled request holds none."""
        return sum(len(held) for held in self.gateway.app[DEPS].governor.memory.leases.values())

    async def ended(self, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` requests have been logged and settled; answers their lines.
        Each ticket goes to the settler before its line is logged: once the settler has
        settled all it was handed, a second line, record or count (or a missing one) shows."""
        await wait_for(lambda: len(self.lines()) >= count)
        await self.gateway.app[DEPS].settler.flush()
        lines = self.lines()
        assert len(lines) == count, lines
        assert sum(self.counted().values()) == count, self.counted()
        return lines
