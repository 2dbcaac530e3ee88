"""The store under test: each contract test runs on MemoryStore and on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisConnection, RedisStore
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    conn = RedisConnection(redis_server.url, "test:", 1.0)
    redis_store = RedisStore(conn)
    yield redis_store
    await redis_store.client.flushdb()
    await conn.close()
