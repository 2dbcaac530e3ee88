"""Settler.flush: a caller waits for the settlements already handed over, instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.limits import Governor
from gateway.limits.governor import SettleItem
from gateway.limits.settler import Settler
from gateway.limits.usage import Usage
from tests.limits.limits_helpers import subject


class GatedGovernor(Governor):
    """A memory Governor whose settlements wait for `gate` (and fail if `broken`)."""

    def __init__(self) -> None:
        super().__init__(Settings(), None, "st:")
        self.gate = asyncio.Event()
        self.broken = False

    async def settle_many(self, items: list[SettleItem]) -> None:
        await self.gate.wait()
        if self.broken:
            raise RuntimeError("the limits backend is gone")
        await super().settle_many(items)


@pytest.fixture
async def governor() -> GatedGovernor:
    return GatedGovernor()


@pytest.fixture
async def settler(governor: GatedGovernor) -> AsyncIterator[Settler]:
    made = Settler(governor)
    made.start()
    yield made
    governor.gate.set()
    await made.stop()


async def item(governor: Governor) -> SettleItem:
    ticket = await governor.admit(subject(), 0)
    return (ticket, Usage(input_tokens=10, output_tokens=5), 200, 1.0, "stub", "gpt-test")


def recorded(governor: Governor) -> int:
    return len(governor.memory.stream)


async def test_flush_with_nothing_submitted_returns_at_once(settler: Settler) -> None:
    async with asyncio.timeout(1):
        await settler.flush()


async def test_flush_waits_until_every_submitted_settlement_is_done(
    governor: GatedGovernor, settler: Settler
) -> None:
    for _ in range(3):
        settler.submit(await item(governor))
    flushed = asyncio.create_task(settler.flush())
    for _ in range(5):
        await asyncio.sleep(0)  # the settler takes the batch and waits at the gate
    assert not flushed.done()
    assert recorded(governor) == 0
    governor.gate.set()
    async with asyncio.timeout(5):
        await flushed
    assert recorded(governor) == 3


async def test_flush_ends_when_the_settlement_failed(
    governor: GatedGovernor, settler: Settler
) -> None:
    governor.broken = True
    settler.submit(await item(governor))
    governor.gate.set()
    async with asyncio.timeout(5):
        await settler.flush()
    assert recorded(governor) == 0


async def test_flush_waits_for_a_batch_submitted_while_another_settles(
    governor: GatedGovernor, settler: Settler
) -> None:
    settler.submit(await item(governor))
    for _ in range(5):
        await asyncio.sleep(0)  # the first batch is at the gate
    settler.submit(await item(governor))
    flushed = asyncio.create_task(settler.flush())
    governor.gate.set()
    async with asyncio.timeout(5):
        await flushed
    assert recorded(governor) == 2
