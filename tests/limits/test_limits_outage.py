"""Redis going away and coming back: `open` falls back to local limits, `closed` answers 503."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway.config import LimitSettings, Settings
from gateway.errors import ServiceUnavailableError
from gateway.limits import Governor
from gateway.limits.usage import Usage
from tests.limits.limits_helpers import outcome, settle, subject
from tests.support.redis_server import RedisServer


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()  # not the shared session server: this one gets stopped
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(own_redis: RedisServer) -> AsyncIterator[Redis]:
    made = Redis.from_url(own_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    yield made
    await made.aclose()


def governor(client: Redis, policy: str) -> Governor:
    settings = Settings(limits=LimitSettings(on_redis_error=policy, redis_timeout_ms=300))
    return Governor(settings, client, "o:", probe_interval_s=0.0)


async def test_open_falls_back_to_local_limits_and_recovers(
    own_redis: RedisServer, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    gov, who = governor(client, "open"), subject(rpm=2, max_concurrent=5)
    assert (await gov.admit(who, 0)).backend == "redis"
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        local = [await gov.admit(who, 0), await gov.admit(who, 0)]
        assert [t.backend for t in local] == ["memory", "memory"]
        refused = await outcome(gov.admit(who, 0))  # the local limiter still limits
        assert getattr(refused, "status", None) == 429
        assert await settle(gov, local[0], Usage(input_tokens=10)) > 0  # never raises
    assert gov.fallbacks >= 4
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    own_redis.start()  # same port, empty: the client reconnects, the scripts are loaded again
    back = await outcome(gov.admit(who, 0))
    if not hasattr(back, "backend"):  # a pooled connection may fail once on the restart
        back = await gov.admit(who, 0)
    assert getattr(back, "backend", None) == "redis"


async def test_closed_answers_503_with_retry_after(own_redis: RedisServer, client: Redis) -> None:
    gov, who = governor(client, "closed"), subject(rpm=10)
    ticket = await gov.admit(who, 0)
    own_redis.stop()
    error = await outcome(gov.admit(who, 0))
    assert isinstance(error, ServiceUnavailableError)
    assert error.status == 503
    assert error.response_headers()["retry-after"] == "1"
    await settle(gov, ticket)  # after the answer: logged and counted, never raised
    assert gov.lost_settlements == 1
    own_redis.start()
    for _ in range(2):  # a pooled connection may fail once on the restart
        if not isinstance(await outcome(gov.admit(who, 0)), ServiceUnavailableError):
            break
    else:
        pytest.fail("the governor did not recover after Redis came back")


async def test_hung_redis_is_cut_by_the_timeout(client: Redis, own_redis: RedisServer) -> None:
    gov = governor(client, "closed")
    assert own_redis.proc is not None
    own_redis.proc.send_signal(19)  # SIGSTOP: connected, but never answers
    try:
        error = await outcome(gov.admit(subject(rpm=10), 0))
        assert isinstance(error, ServiceUnavailableError)
    finally:
        own_redis.proc.send_signal(18)  # SIGCONT


async def test_request_admitted_locally_is_accounted_in_redis_once_back(
    own_redis: RedisServer, client: Redis
) -> None:
    gov, who = governor(client, "open"), subject(max_concurrent=1)
    own_redis.stop()
    ticket = await gov.admit(who, 0)
    assert ticket.backend == "memory"
    own_redis.start()
    await client.ping()  # a pooled connection may fail once on the restart
    await settle(gov, ticket, Usage(input_tokens=100, output_tokens=10))
    assert not gov.memory.leases[("key", "team-a")]  # the local lease is released
    today = datetime.now(UTC).date()
    rows = await gov.usage_report(None, today, today, "key")
    assert [(r["key"], r["requests"], r["total_tokens"]) for r in rows] == [("team-a", 1, 110)]
