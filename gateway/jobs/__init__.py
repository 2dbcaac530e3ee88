"""Background and async jobs: the queue, the status record, the event log (JobStore), in Redis
or in memory.

A job's status lives in its job record; the first terminal status written wins, so a worker
that finishes after a cancel, or a reclaimed copy of a job, cannot overwrite the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway.store import Json

TERMINAL: Final = frozenset({"completed", "failed", "incomplete", "cancelled"})


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    data: bytes  # the event's JSON, as the client receives it
    kind: str


class JobStore(Protocol):
    async def check(self) -> None:
        """Raise ServiceUnavailableError when jobs can be neither queued nor taken."""

    async def enqueue(self, job_id: str, job: Json, response: Json, ttl_s: int) -> None:
        """Keep the job and its first snapshot (status queued), then queue it."""

    async def take(self, consumer: str, count: int, block_ms: int) -> list[str]:
        """Job ids newly delivered to this consumer (waits up to block_ms)."""

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[str]:
        """Job ids whose consumer stopped heartbeating for min_idle_ms, now this consumer's."""

    async def heartbeat(self, consumer: str, job_ids: list[str]) -> None: ...

    async def release(self, consumer: str, job_id: str) -> None:
        """Hand a job back so another consumer takes it at once (shutdown)."""

    async def done(self, job_id: str) -> None:
        """The job needs no more running: drop it from the queue."""

    async def get_job(self, job_id: str) -> Json | None: ...

    async def start_attempt(self, job_id: str, ttl_s: int) -> int:
        """Count an attempt and clear the event log of earlier ones; 0 if the job is gone."""

    async def status(self, job_id: str) -> str | None: ...

    async def write(
        self, job_id: str, status: str, response: Json, ttl_s: int, served: Json | None = None
    ) -> bool:
        """Set the status and the stored response snapshot (and where it was `served`, when
        given), unless a terminal one is there."""

    async def append_events(self, job_id: str, events: list[Event], ttl_s: int) -> None: ...

    async def read_events(self, job_id: str, cursor: Any, block_ms: int) -> tuple[list[Event], Any]:
        """Events after `cursor` (None: from the start), waiting up to block_ms for new ones."""

    async def queued(self) -> int:
        """Jobs waiting for a worker (taken by none yet), across every replica sharing the queue."""
