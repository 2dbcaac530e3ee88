"""Settler: one task per process hands finished requests' tickets to the Governor, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final

from gateway.limits.governor import Governor, SettleItem

log = logging.getLogger("gateway.limits")

BATCH: Final = 256  # settlements sent in one round trip at most


class Settler:
    """One task per process settles tickets in order; no task is made per request."""

    def __init__(self, governor: Governor) -> None:
        self.governor = governor
        self._queue: deque[SettleItem] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._submitted = 0
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def submit(self, item: SettleItem) -> None:
        self._queue.append(item)
        self._submitted += 1
        self._ready.set()

    async def flush(self) -> None:
        """Wait until every settlement submitted before this call is done, failed ones too
        (a caller about to read usage or counters sees them all, instead of sleeping)."""
        target = self._submitted
        if self._done >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    async def _run(self) -> None:
        while not self._stopping:
            await self._ready.wait()
            self._ready.clear()
            await self._drain()

    async def _drain(self) -> None:
        # Everything queued goes at once: on Redis one round trip carries the whole batch.
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                await self.governor.settle_many(batch)
            except Exception:
                log.exception("settling %d requests failed", len(batch))
            self._done += len(batch)
            if self._waiters:
                self._wake()

    def _wake(self) -> None:
        waiting = []
        for target, waiter in self._waiters:
            if target > self._done:
                waiting.append((target, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._waiters = waiting

    async def stop(self) -> None:
        """Settle what is queued, then stop (at shutdown). No cancel: a settlement cut in
        the middle would be lost, and its Redis timeout could swallow the cancel."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task
        await self._drain()
