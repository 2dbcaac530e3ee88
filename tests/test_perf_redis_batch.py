"""One Redis round trip per loop tick: the store's writes, the admissions and the settlements
asked together share one write on one connection; a tick's settlements are one script call
whose per-day totals add up exactly; a NOSCRIPT sends again only the calls it refused."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis

from gateway import redis_batch
from gateway.config import LimitSettings, Settings
from gateway.errors import ServiceUnavailableError
from gateway.limits import Governor, Ticket
from gateway.limits.governor import SettleItem
from gateway.limits.redis import _SETTLE
from gateway.limits.usage import Usage
from gateway.store.redis import RedisConnection, RedisStore
from tests.limits.limits_helpers import subject
from tests.support.redis_server import RedisServer

TIMEOUT_MS = 1000


@pytest.fixture
async def conn(redis_server: RedisServer) -> AsyncIterator[RedisConnection]:
    made = RedisConnection(redis_server.url, "rt:", TIMEOUT_MS / 1000)
    yield made
    await made.client.flushdb()
    await made.close()


def governor(conn: RedisConnection) -> Governor:
    """Limits on the store's client and timeout, as a gateway on Redis has them."""
    settings = Settings(limits=LimitSettings(redis_timeout_ms=TIMEOUT_MS))
    return Governor(settings, conn.client, conn.prefix)


async def _stats(server: RedisServer, section: str) -> dict[str, Any]:
    async with redis.Redis.from_url(server.url) as observer:
        found: dict[str, Any] = await observer.info(section)
    return found


async def _evalsha_calls(server: RedisServer) -> int:
    return int((await _stats(server, "commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))


def _settled(ticket: Ticket, tokens: int) -> SettleItem:
    return (ticket, Usage(input_tokens=tokens, output_tokens=1), 200, 1.0, "stub", "gpt-up")


async def test_puts_admissions_and_settlements_of_a_tick_share_one_connection(
    redis_server: RedisServer, conn: RedisConnection
) -> None:
    store, limits = RedisStore(conn), governor(conn)
    who = subject(rpm=1000, tpm=10**6, max_concurrent=100)
    await store.ping()  # the one connection is open before the tick
    before = int((await _stats(redis_server, "stats"))["total_connections_received"])
    earlier = [await limits.admit(who, 10) for _ in range(3)]
    records = [{"owner": "o", "response": {"id": f"resp_{i}"}} for i in range(10)]
    results = await asyncio.gather(
        *(store.put_response(f"resp_{i}", r, 60) for i, r in enumerate(records)),
        *(limits.admit(who, 10) for _ in range(10)),
        limits.settle_many([_settled(t, 10) for t in earlier]),
    )
    after = int((await _stats(redis_server, "stats"))["total_connections_received"])
    assert results[:10] == [True] * 10
    assert all(isinstance(t, Ticket) and t.backend == "redis" for t in results[10:20])
    assert after - before - 1 == 0  # less the observer: nothing but the one connection


async def test_a_ticks_settlements_are_one_script_call_and_their_totals_add_up(
    redis_server: RedisServer, conn: RedisConnection
) -> None:
    limits = governor(conn)
    who = subject(rpm=1000, tpm=10**6, max_concurrent=100)
    tickets = [await limits.admit(who, 10) for _ in range(20)]
    before = await _evalsha_calls(redis_server)
    await limits.settle_many([_settled(t, n) for n, t in enumerate(tickets)])
    assert await _evalsha_calls(redis_server) - before == 1
    today = datetime.fromtimestamp(time.time(), UTC).date()
    (row,) = await limits.usage_report(None, today, today, "key")
    assert row["requests"] == 20
    assert row["input_tokens"] == sum(range(20))
    assert row["output_tokens"] == 20
    assert await conn.client.xlen(f"{conn.prefix}rl:{{limits}}:usage") == 20
    held = await conn.client.zcard(f"{conn.prefix}rl:{{limits}}:lease:key:team-a")
    assert held == 0  # every lease given back


async def test_a_noscript_sends_again_only_the_calls_it_refused(
    redis_server: RedisServer, conn: RedisConnection
) -> None:
    limits = governor(conn)
    who = subject(rpm=1000, tpm=10**6, max_concurrent=100)
    first = await limits.admit(who, 10)
    await conn.client.script_flush()
    await conn.client.script_load(_SETTLE)  # the settlement runs; the admission is refused
    second, _ = await asyncio.gather(
        limits.admit(who, 10), limits.settle_many([_settled(first, 5)])
    )
    assert second.backend == "redis"  # sent again once its script was loaded
    assert limits.fallbacks == 0
    today = datetime.fromtimestamp(time.time(), UTC).date()
    (row,) = await limits.usage_report(None, today, today, "key")
    assert row["requests"] == 1  # the settlement that ran was not sent twice
    assert await conn.client.xlen(f"{conn.prefix}rl:{{limits}}:usage") == 1


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, to stall or restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def _stall(server: RedisServer, seconds: float) -> None:
    """Redis answers nobody for `seconds` (it runs DEBUG SLEEP), from now on."""
    other: Any = redis.Redis.from_url(server.url)
    async with other:
        await other.execute_command("DEBUG", "SLEEP", seconds)


async def test_round_trips_still_in_flight_share_the_one_connection(
    own_redis: RedisServer,
) -> None:
    conn = RedisConnection(own_redis.url, "rt:", 2.0)
    store = RedisStore(conn)
    try:
        await store.put_response("resp_first", {"owner": "o"}, 60)  # the connection is open
        before = int((await _stats(own_redis, "stats"))["total_connections_received"])
        stalled = asyncio.create_task(_stall(own_redis, 0.3))
        await asyncio.sleep(0.05)  # Redis is asleep: every tick's write waits behind it
        puts = []
        for i in range(5):  # five ticks, five round trips in flight at once
            puts.append(asyncio.create_task(store.put_response(f"resp_{i}", {"owner": "o"}, 60)))
            await asyncio.sleep(0)
        kept = await asyncio.gather(*puts)
        await stalled
        after = int((await _stats(own_redis, "stats"))["total_connections_received"])
    finally:
        await conn.close()
    assert kept == [True] * 5
    assert after - before - 2 == 0  # less the sleeper and the observer: no connection more


async def test_a_stalled_redis_fails_the_calls_in_time_and_a_restarted_one_serves_again(
    own_redis: RedisServer,
) -> None:
    conn = RedisConnection(own_redis.url, "rt:", 0.2)
    store = RedisStore(conn)
    try:
        assert await store.put_response("resp_a", {"owner": "o"}, 60)
        stalled = asyncio.create_task(_stall(own_redis, 1.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            await store.put_response("resp_b", {"owner": "o"}, 60)
        assert time.monotonic() - started < 0.6  # the round trip's timeout, not Redis's sleep
        await stalled
        assert await store.put_response("resp_c", {"owner": "o"}, 60)  # a new connection
        own_redis.stop()
        with pytest.raises(ServiceUnavailableError):
            await store.put_response("resp_d", {"owner": "o"}, 60)
        own_redis.start()  # restarted empty: no scripts, no keys
        assert await store.put_response("resp_e", {"owner": "o"}, 60)
        found = await store.get_responses("o", ["resp_e"])
    finally:
        await conn.close()
    assert found == [{"owner": "o"}]


async def test_a_connection_quiet_past_the_health_check_interval_is_replaced(
    own_redis: RedisServer,
) -> None:
    client = redis.Redis.from_url(own_redis.url, health_check_interval=1)
    batch = redis_batch.shared(client, 1.0)
    script = client.register_script("return ARGV[1]")
    try:
        assert await batch.run(script, [], ["one"]) == b"one"
        before = int((await _stats(own_redis, "stats"))["total_connections_received"])
        assert await batch.run(script, [], ["two"]) == b"two"  # the same connection
        await asyncio.sleep(1.1)
        assert await batch.run(script, [], ["three"]) == b"three"
        after = int((await _stats(own_redis, "stats"))["total_connections_received"])
    finally:
        await client.aclose()
    assert after - before - 1 == 1  # less the observer: one connection, checked anew


async def test_a_connection_redis_closed_between_calls_is_replaced_without_a_failure(
    own_redis: RedisServer,
) -> None:
    conn = RedisConnection(own_redis.url, "rt:", 1.0)
    store = RedisStore(conn)
    try:
        assert await store.put_response("resp_a", {"owner": "o"}, 60)
        killer: Any = redis.Redis.from_url(own_redis.url)
        async with killer:
            killed = await killer.execute_command(
                "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
            )
        assert killed >= 1
        await asyncio.sleep(0.05)  # the close reaches the gateway
        kept = await asyncio.gather(
            *(store.put_response(f"resp_{i}", {"owner": "o"}, 60) for i in range(5))
        )
    finally:
        await conn.close()
    assert kept == [True] * 5


async def test_a_closed_connection_keeps_nothing_alive(
    redis_server: RedisServer,
) -> None:
    conn = RedisConnection(redis_server.url, "rt-closed:", 1.0)
    store = RedisStore(conn)
    assert await store.put_response("resp_closed", {"owner": "o"}, 60)  # its batch took a wire
    client = weakref.ref(conn.client)
    await conn.client.delete("rt-closed:resp:{resp_closed}")
    await conn.close()
    del store, conn
    gc.collect()
    assert client() is None  # nothing module-level keeps a closed client (or its batch) alive
