"""MemoryJobs: the job behaviour inside one process (queue, first terminal write, event log)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.jobs import TERMINAL, Event
from gateway.store import Json
from gateway.store.memory import MemoryStore


class MemoryJobs:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._jobs: dict[str, Json] = {}
        self._status: dict[str, str] = {}
        self._attempts: dict[str, int] = {}
        self._events: dict[str, list[Event]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    async def check(self) -> None:
        return None

    async def enqueue(self, job_id: str, job: Json, response: Json, ttl_s: int) -> None:
        self._jobs[job_id] = job
        self._status[job_id] = response["status"]
        self._attempts[job_id] = 0
        await self.store.put_response(
            job_id,
            {
                "owner": job["owner"],
                "response": response,
                "input": job["input_items"],
                "chain": job["chain"],
                "background": True,
            },
            ttl_s,
        )
        self._queue.put_nowait(job_id)

    async def take(self, consumer: str, count: int, block_ms: int) -> list[str]:
        ids: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(block_ms / 1000):
                ids.append(await self._queue.get())
        while ids and len(ids) < count and not self._queue.empty():
            ids.append(self._queue.get_nowait())
        return ids

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[str]:
        return []  # one process: a job's consumer cannot die without the queue dying too

    async def heartbeat(self, consumer: str, job_ids: list[str]) -> None:
        return None

    async def release(self, consumer: str, job_id: str) -> None:
        self._queue.put_nowait(job_id)

    async def done(self, job_id: str) -> None:
        return None

    async def get_job(self, job_id: str) -> Json | None:
        return self._jobs.get(job_id)

    async def start_attempt(self, job_id: str, ttl_s: int) -> int:
        if job_id not in self._jobs or self._status.get(job_id) in TERMINAL:
            return 0  # gone, or already ended: no attempt may run it again
        self._attempts[job_id] += 1
        self._events[job_id] = []
        self._notify(job_id)
        return self._attempts[job_id]

    async def status(self, job_id: str) -> str | None:
        return self._status.get(job_id)

    async def write(
        self, job_id: str, status: str, response: Json, ttl_s: int, served: Json | None = None
    ) -> bool:
        current = self._status.get(job_id)
        if current is None or current in TERMINAL:
            return False
        (record,) = await self.store.get_responses(self._jobs[job_id]["owner"], [job_id])
        if record is None:
            return False
        self._status[job_id] = status
        record = {**record, "response": response}
        if served is not None:
            record["served"] = served
        self.store.replace_response(job_id, record, ttl_s)
        self._notify(job_id)
        return True

    async def append_events(self, job_id: str, events: list[Event], ttl_s: int) -> None:
        self._events.setdefault(job_id, []).extend(events)
        self._notify(job_id)

    def _notify(self, job_id: str) -> None:
        waiter = self._changed.pop(job_id, None)
        if waiter is not None:
            waiter.set()

    async def read_events(self, job_id: str, cursor: Any, block_ms: int) -> tuple[list[Event], Any]:
        start = cursor or 0
        log = self._events.get(job_id, [])
        if len(log) <= start and block_ms:
            waiter = self._changed.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):
                    await waiter.wait()
            log = self._events.get(job_id, [])
        if len(log) < start:
            start = 0  # a new attempt restarted the log
        return log[start:], len(log)

    async def queued(self) -> int:
        return self._queue.qsize()
