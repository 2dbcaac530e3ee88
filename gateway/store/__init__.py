"""The shared state's interface (Store) and open_store(settings): Redis, or memory for one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from gateway.config import Settings


class Store(Protocol):
    kind: str

    async def ping(self) -> None:
        """Raise ServiceUnavailableError when the store cannot be reached."""


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    url = settings.store.url
    if url.startswith("memory://"):
        from gateway.store.memory import MemoryStore

        yield MemoryStore()
        return
    from gateway.store.redis import RedisStore

    store = RedisStore(url, settings.store.prefix, settings.limits.redis_timeout_ms / 1000)
    try:
        yield store
    finally:
        await store.close()
