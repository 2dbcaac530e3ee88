"""The store under test: each contract test runs on MemoryStore and on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_store = RedisStore(redis_server.url, "test:", 1.0)
    yield redis_store
    await redis_store.client.flushdb()
    await redis_store.close()
