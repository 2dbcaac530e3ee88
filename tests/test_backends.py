"""open_backends: the state's home, chosen once by store.url, opened and closed as one."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from gateway.backends import in_memory, open_backends
from gateway.config import Settings, StoreSettings
from gateway.errors import ServiceUnavailableError
from tests.support.redis_server import RedisServer

RECORD = {"owner": "a", "response": {"id": "resp_1"}}


def key_record(key_id: str) -> dict[str, object]:
    return {"id": key_id, "owner": "owner_" + key_id, "sha256": "d" * 64, "created_at": 1}


def on_redis(server: RedisServer) -> Settings:
    return Settings(store=StoreSettings(url=server.url, prefix="bk:"))


async def clients(server: RedisServer) -> int:
    probe = redis.Redis.from_url(server.url)
    try:
        listed = await probe.client_list()
        return len(listed) - 1  # not the probe itself
    finally:
        await probe.aclose()


def test_only_a_memory_url_keeps_state_in_the_process() -> None:
    assert in_memory("memory://")
    assert not in_memory("redis://127.0.0.1:6379/0")
    assert not in_memory("rediss://cache.example:6380")


async def test_memory_backends_are_this_process_alone() -> None:
    async with open_backends(Settings()) as one, open_backends(Settings()) as other:
        assert one.kind == "memory"
        await one.check()
        assert one.limiter.redis is None  # the limits count in this process too
        assert await one.store.put_response("resp_1", RECORD, 60)
        assert await one.keys.create(key_record("k1"))
        assert await other.store.get_responses("a", ["resp_1"]) == [None]
        assert await other.keys.find("d" * 64) is None


async def test_redis_backends_share_state_through_one_connection(
    redis_server: RedisServer,
) -> None:
    before = await clients(redis_server)
    async with open_backends(on_redis(redis_server)) as one:
        async with open_backends(on_redis(redis_server)) as other:  # another replica
            assert one.kind == other.kind == "redis"
            await one.check()  # the job queue's consumer group is made
            assert one.limiter.redis is not None
            assert await one.store.put_response("resp_1", RECORD, 60)
            assert await one.keys.create(key_record("k1"))
            assert await other.store.get_responses("a", ["resp_1"]) == [RECORD]
            found = await other.keys.find("d" * 64)
            assert found is not None
            assert found["id"] == "k1"
        assert await clients(redis_server) > before
        await one.store.ping()
    async with asyncio.timeout(5):  # closing them closed every connection they opened
        while await clients(redis_server) > before:
            await asyncio.sleep(0.01)
    cleanup = redis.Redis.from_url(redis_server.url)
    keys = [k async for k in cleanup.scan_iter(match="bk:*")]
    await cleanup.delete(*keys)
    await cleanup.aclose()


async def test_a_failure_the_jobs_see_makes_the_store_check_it_keeps() -> None:
    own = RedisServer()  # not the shared session server: this one gets stopped
    own.start()
    try:
        async with open_backends(on_redis(own)) as backends:
            await backends.store.check_writable()  # nothing failed: no write to check
            probe = redis.Redis.from_url(own.url)
            assert await probe.exists("bk:health:{write}") == 0
            await probe.aclose()
            own.stop()
            with pytest.raises(ServiceUnavailableError):
                await backends.jobs.get_job("resp_1")
            own.start()  # empty, same port: the clients reconnect
            await backends.store.check_writable()  # the jobs' failure is the store's too
            probe = redis.Redis.from_url(own.url)
            assert await probe.exists("bk:health:{write}") == 1
            await probe.aclose()
    finally:
        own.stop()
