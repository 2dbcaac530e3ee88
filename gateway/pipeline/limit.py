"""admit: rate limits, concurrency and budgets for the key, its projects and the model.

`settle` is the other half: reconcile the reservation with the real usage, record it, and
charge its cost, once per request, whatever happened (a stream that failed or a client
that left included).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Final

from gateway.errors import PermissionDeniedError
from gateway.limits import Governor, Subject
from gateway.limits.governor import SettleItem
from gateway.models import Call, Usage

log = logging.getLogger("gateway.limits")

DEFAULT_OUTPUT_TOKENS: Final = 1024  # reserved when the request sets no max_output_tokens
BATCH: Final = 256  # settlements sent in one round trip at most


def attribution(call: Call) -> tuple[str, ...]:
    """The projects a request charges: the `attribution` header's, or the key's own."""
    key = call.principal
    assert key is not None
    header = call.headers.get("attribution")
    if not header:
        return (key.project,) if key.project else ()
    asked = tuple(dict.fromkeys(p.strip() for p in header.split(",") if p.strip()))
    allowed = key.projects or ((key.project,) if key.project else ())
    for project in asked:
        if project not in allowed:
            raise PermissionDeniedError(
                f"This key may not charge project '{project}'; it may charge: "
                f"{', '.join(allowed) or 'no project'}.",
                param="attribution",
                code="project_not_allowed",
            )
    return asked


def estimate(call: Call) -> int:
    limit = call.body.get("max_output_tokens")
    output = limit if isinstance(limit, int) and limit > 0 else DEFAULT_OUTPUT_TOKENS
    return len(call.raw) // 4 + output


def estimated_usage(call: Call, output_tokens: int) -> Usage:
    """What an answer that ended without the upstream's usage is charged: the input it sent
    (a quarter of its bytes, as admitted) and the output it relayed."""
    return Usage(
        input_tokens=len(call.upstream_body()) // 4, output_tokens=output_tokens, estimated=True
    )


async def admit(call: Call) -> None:
    assert call.principal is not None
    subject = Subject(
        call.principal,
        attribution(call),
        call.route.name if call.route else call.model,
        call.route.price if call.route else None,
    )
    call.ticket = await call.deps.governor.admit(subject, estimate(call))


def settle(call: Call) -> None:
    """Hand the ticket to the settler: the answer goes out without waiting for Redis, and a
    client that leaves cannot cancel the accounting."""
    ticket = call.ticket
    if ticket is None or ticket.settled:
        return
    target = call.target
    call.deps.settler.submit(
        (
            ticket,
            call.usage,
            call.status or 500,
            (time.monotonic() - call.started) * 1000,
            target.provider.name if target else None,
            target.model if target else None,
        )
    )


class Settler:
    """One task per process settles tickets in order; no task is made per request."""

    def __init__(self, governor: Governor) -> None:
        self.governor = governor
        self._queue: deque[SettleItem] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def submit(self, item: SettleItem) -> None:
        self._queue.append(item)
        self._ready.set()

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

    async def stop(self) -> None:
        """Settle what is queued, then stop (at shutdown). No cancel: a settlement cut in
        the middle would be lost, and its Redis timeout could swallow the cancel."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task
        await self._drain()
