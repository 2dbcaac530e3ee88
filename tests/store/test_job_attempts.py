"""A job's attempts, on both job stores: an ended job never starts another attempt (which
would wipe its event log and call the upstream again, paid for twice)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.jobs import JobStore
from gateway.jobs.memory import MemoryJobs
from gateway.jobs.redis import RedisJobs
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisConnection
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def jobs(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobs(MemoryStore())
        return
    conn = RedisConnection(redis_server.url, f"{tmp_path.name}:", 1.0)
    yield RedisJobs(conn)
    await conn.close()


@pytest.mark.parametrize("outcome", ["completed", "failed", "incomplete", "cancelled"])
async def test_an_ended_job_starts_no_attempt(jobs: JobStore, outcome: str) -> None:
    await jobs.enqueue(
        "resp_1",
        {"owner": "a", "input_items": [], "chain": []},
        {"id": "resp_1", "status": "queued"},
        60,
    )
    assert await jobs.start_attempt("resp_1", 60) == 1
    assert await jobs.write("resp_1", outcome, {"id": "resp_1", "status": outcome}, 60)
    assert await jobs.start_attempt("resp_1", 60) == 0
    assert await jobs.status("resp_1") == outcome


async def test_a_running_job_counts_its_attempts(jobs: JobStore) -> None:
    await jobs.enqueue(
        "resp_2",
        {"owner": "a", "input_items": [], "chain": []},
        {"id": "resp_2", "status": "queued"},
        60,
    )
    assert await jobs.start_attempt("resp_2", 60) == 1
    assert await jobs.start_attempt("resp_2", 60) == 2
    assert await jobs.start_attempt("resp_missing", 60) == 0
