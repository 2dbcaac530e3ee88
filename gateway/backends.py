"""open_backends(settings): where the gateway keeps its state, chosen once by `store.url`.

One Redis connection (gateway.store.redis.RedisConnection), opened here and closed here, serves
the stored responses and conversations (store), the background job queue (jobs), the keys made
through the admin API (keys) and the shared limits (limiter); with `memory://` each of them
lives in this process. `redis+cluster://` (or `rediss+cluster://`) opens a Redis Cluster client
instead: every key carries a hash tag, so each script and transaction stays in one slot. Every
process opens its own (a `--workers` child after it starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis, RedisCluster

from gateway.config import Settings
from gateway.jobs import JobStore
from gateway.jobs.memory import MemoryJobs
from gateway.jobs.redis import RedisJobs
from gateway.keystore import KeyStore, MemoryKeyStore, RedisKeyStore
from gateway.limits import Governor
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisConnection, RedisStore

MEMORY_URL: Final = "memory://"


def in_memory(url: str) -> bool:
    """The state lives in this one process: nothing is shared with another."""
    return url.startswith(MEMORY_URL)


@dataclass(frozen=True, slots=True)
class Backends:
    kind: str  # "redis" or "memory": what /readyz names
    store: Store
    jobs: JobStore
    keys: KeyStore
    limiter: Governor

    async def check(self) -> None:
        """Raise ServiceUnavailableError unless the store answers and jobs can be queued."""
        await self.store.ping()
        await self.jobs.check()


@asynccontextmanager
async def open_backends(settings: Settings) -> AsyncIterator[Backends]:
    if in_memory(settings.store.url):
        yield _in_memory(settings)
        return
    timeout_s = settings.limits.redis_timeout_ms / 1000
    conn = RedisConnection(settings.store.url, settings.store.prefix, timeout_s)
    try:
        yield Backends(
            kind="redis",
            store=RedisStore(conn),
            jobs=RedisJobs(conn),
            keys=RedisKeyStore(conn),
            limiter=_governor(settings, conn.client),
        )
    finally:
        await conn.close()


def _in_memory(settings: Settings) -> Backends:
    store = MemoryStore()
    return Backends(
        kind="memory",
        store=store,
        jobs=MemoryJobs(store),
        keys=MemoryKeyStore(),
        limiter=_governor(settings, None),
    )


def _governor(settings: Settings, client: Redis | RedisCluster | None) -> Governor:
    return Governor(settings, client, settings.store.prefix)
