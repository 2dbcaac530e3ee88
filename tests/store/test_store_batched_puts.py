"""Responses kept at the same moment are written together: one round trip on one connection,
each create still on its own (create-only, identical bytes kept, an id taken refused)."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from gateway.store.redis import RedisConnection, RedisStore
from tests.support.redis_server import RedisServer


async def _connections_received(server: RedisServer) -> int:
    async with redis.Redis.from_url(server.url) as observer:
        stats = await observer.info("stats")
    return int(stats["total_connections_received"])


async def test_concurrent_puts_share_one_connection(redis_server: RedisServer) -> None:
    conn = RedisConnection(redis_server.url, "batched:", 1.0)
    store = RedisStore(conn)
    try:
        await store.ping()  # the one connection is open before the puts
        before = await _connections_received(redis_server)
        records = [{"owner": "o", "response": {"id": f"resp_{i}"}} for i in range(40)]
        kept = await asyncio.gather(
            *(store.put_response(f"resp_{i}", r, 60) for i, r in enumerate(records))
        )
        opened = await _connections_received(redis_server) - before - 1  # less the observer
        # A retried save with the same bytes is kept; another record under a kept id is not.
        again = await asyncio.gather(
            store.put_response("resp_0", records[0], 60),
            store.put_response("resp_1", {"owner": "o", "response": {"id": "other"}}, 60),
        )
        found = await store.get_responses("o", ["resp_0", "resp_1", "resp_39"])
    finally:
        await store.client.flushdb()
        await conn.close()
    assert kept == [True] * 40
    assert opened == 0
    assert list(again) == [True, False]
    assert found == [records[0], records[1], records[39]]
