"""Governor.admit and settle: requests, tokens and concurrency, on memory and on a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway.config import ModelLimits, ProjectLimits, Settings
from gateway.errors import GatewayError, RateLimitError
from gateway.limits import Governor, Ticket, TokensRateLimitError
from gateway.limits.usage import Usage
from tests.limits.limits_helpers import (
    Harness,
    admitted,
    error_body,
    outcome,
    settle,
    subject,
)
from tests.support.redis_server import RedisServer


async def test_burst_admits_exactly_rpm(harness: Harness) -> None:
    governor, who = harness.governor(), subject(rpm=60)
    results = await asyncio.gather(*(admitted(governor, who) for _ in range(100)))
    assert sum(results) == 60


async def test_replicas_share_the_limit_exactly(redis_harness: Harness) -> None:
    replicas = [redis_harness.governor() for _ in range(3)]
    who = subject(rpm=60, tpm=1_000_000)
    results = await asyncio.gather(*(admitted(replicas[i % 3], who, 10) for i in range(100)))
    assert sum(results) == 60


async def test_admissions_of_one_tick_are_one_script_call_each_decided_alone(
    redis_harness: Harness,
) -> None:
    governor = redis_harness.governor()
    assert governor.redis is not None
    client = governor.redis.client
    full, free = subject("team-full", rpm=1), subject("team-free", rpm=100, max_concurrent=100)
    assert await admitted(governor, full)
    await client.config_resetstat()
    results = await asyncio.gather(
        *(admitted(governor, full if i % 2 else free) for i in range(40))
    )
    assert results == [i % 2 == 0 for i in range(40)]
    calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert calls == 1


async def test_refusal_has_openai_envelope_and_headers(harness: Harness) -> None:
    governor, who = harness.governor(), subject(rpm=2)
    for _ in range(2):
        await governor.admit(who, 0)
    error = await outcome(governor.admit(who, 0))
    assert type(error) is RateLimitError
    assert error.status == 429
    assert error_body(error) == {
        "message": error.message,
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert error.message.startswith(
        "Rate limit reached for gpt-test in key 'team-a' on requests per min (RPM): "
        "Limit 2, Used 2, Requested 1. Please try again in "
    )
    headers = error.response_headers()
    assert 1 <= int(headers["retry-after"]) <= 60
    assert 0 < int(headers["retry-after-ms"]) <= 60_000
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


async def test_token_refusal_is_type_tokens(harness: Harness) -> None:
    governor, who = harness.governor(), subject(tpm=1000)
    await governor.admit(who, 700)
    error = await outcome(governor.admit(who, 400))
    assert isinstance(error, TokensRateLimitError)
    assert error_body(error)["type"] == "tokens"
    assert error.code == "rate_limit_exceeded"
    assert "on tokens per min (TPM): Limit 1000, Used 700, Requested 400." in error.message


async def test_estimate_above_tpm_is_refused_for_good(harness: Harness) -> None:
    error = await outcome(harness.governor().admit(subject(tpm=1000), 5000))
    assert isinstance(error, TokensRateLimitError)
    assert error.message.startswith("Request too large for gpt-test in key 'team-a' on tokens")
    assert "Limit 1000, Requested 5000" in error.message
    assert error.response_headers()["x-should-retry"] == "false"


async def test_refusal_consumes_nothing(harness: Harness) -> None:
    governor = harness.governor(models={"gpt-test": ModelLimits(rpm=1)})
    limited, other = subject(rpm=5, tpm=100), subject(rpm=5, tpm=100, model="other")
    await governor.admit(limited, 10)
    for _ in range(3):  # refused by the model's limit: the key's counters must not move
        assert isinstance(await outcome(governor.admit(limited, 10)), RateLimitError)
    ticket = await governor.admit(other, 10)
    assert governor.headers(ticket)["x-ratelimit-remaining-requests"] == "3"
    assert governor.headers(ticket)["x-ratelimit-remaining-tokens"] == "80"


async def test_headers_report_the_window(harness: Harness) -> None:
    governor = harness.governor()
    ticket = await governor.admit(subject(rpm=60, tpm=1000), 100)
    headers = governor.headers(ticket)
    assert {k: v for k, v in headers.items() if "reset" not in k} == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
    }
    assert headers["x-ratelimit-reset-requests"] in {"59s", "1m0s"} or (
        headers["x-ratelimit-reset-requests"].startswith("59.")
    )


async def test_no_limits_no_headers(harness: Harness) -> None:
    governor = harness.governor()
    ticket = await governor.admit(subject(), 100)
    assert governor.headers(ticket) == {}
    assert ticket.backend == "none"


async def test_no_limits_never_touch_redis() -> None:
    dead = RedisServer()  # never started: any command would fail
    client = Redis.from_url(dead.url, socket_connect_timeout=0.2)
    governor = Governor(Settings(), client, "x:")
    try:
        ticket = await governor.admit(subject(budget_usd=None), 10_000)
        assert ticket.backend == "none"
        assert governor.fallbacks == 0
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("real", "remaining"),
    [(40, "360"), (300, "100")],
    ids=["smaller-frees-room", "larger-takes-more"],
)
async def test_settle_reconciles_tokens(harness: Harness, real: int, remaining: str) -> None:
    governor, who = harness.governor(), subject(tpm=500)
    ticket = await governor.admit(who, 100)
    await settle(governor, ticket, Usage(input_tokens=real // 2, output_tokens=real - real // 2))
    after = await governor.admit(who, 100)
    assert governor.headers(after)["x-ratelimit-remaining-tokens"] == remaining


async def test_settle_without_usage_keeps_the_estimate(harness: Harness) -> None:
    governor, who = harness.governor(), subject(tpm=500)
    await settle(governor, await governor.admit(who, 300), None)
    assert isinstance(await outcome(governor.admit(who, 300)), TokensRateLimitError)
    assert isinstance(await outcome(governor.admit(who, 200)), Ticket)


async def test_larger_usage_blocks_what_the_estimate_allowed(harness: Harness) -> None:
    governor, who = harness.governor(), subject(tpm=500)
    await settle(governor, await governor.admit(who, 100), Usage(input_tokens=450))
    assert isinstance(await outcome(governor.admit(who, 100)), TokensRateLimitError)


async def test_retry_after_is_when_room_exists(harness: Harness) -> None:
    governor, who = harness.governor(window_s=1.2), subject(rpm=2)
    await governor.admit(who, 0)
    await harness.sleep(0.3)
    await governor.admit(who, 0)
    error = await outcome(governor.admit(who, 0))
    assert isinstance(error, RateLimitError)
    wait_ms = int(error.response_headers()["retry-after-ms"])
    # The first request leaves the window 1.2 s after it came (to a 20 ms sub-bucket).
    if harness.kind == "memory":
        assert wait_ms == 900
    else:
        assert 500 <= wait_ms <= 900
    await harness.sleep(wait_ms / 1000)
    assert isinstance(await outcome(governor.admit(who, 0)), Ticket)


async def test_max_concurrent_and_settle_releases(harness: Harness) -> None:
    governor, who = harness.governor(), subject(max_concurrent=2)
    first, _ = await governor.admit(who, 0), await governor.admit(who, 0)
    error = await outcome(governor.admit(who, 0))
    assert type(error) is RateLimitError
    assert error_body(error)["type"] == "requests"
    assert error.response_headers()["retry-after"] == "1"
    assert "Too many concurrent requests" in error.message
    await settle(governor, first)
    await settle(governor, first)  # settling twice releases once
    assert isinstance(await outcome(governor.admit(who, 0)), Ticket)
    assert isinstance(await outcome(governor.admit(who, 0)), GatewayError)


async def test_unsettled_lease_expires(harness: Harness) -> None:
    governor, who = harness.governor(lease_ttl_s=0.4), subject(max_concurrent=1)
    await governor.admit(who, 0)  # its replica "dies": never settled
    assert isinstance(await outcome(governor.admit(who, 0)), RateLimitError)
    await harness.sleep(0.5)
    assert isinstance(await outcome(governor.admit(who, 0)), Ticket)


async def test_renew_keeps_a_long_request_leased(harness: Harness) -> None:
    governor, who = harness.governor(lease_ttl_s=0.4), subject(max_concurrent=1)
    ticket = await governor.admit(who, 0)
    await harness.sleep(0.25)
    await governor.renew(ticket)
    await harness.sleep(0.25)
    assert isinstance(await outcome(governor.admit(who, 0)), RateLimitError)


async def test_project_limits_are_shared_by_keys(harness: Harness) -> None:
    governor = harness.governor(projects={"p1": ProjectLimits(rpm=3)})
    one, two = subject("k1", ("p1",)), subject("k2", ("p1",))
    results = [await admitted(governor, who) for who in (one, two, one, two)]
    assert results == [True, True, True, False]
    error = await outcome(governor.admit(two, 0))
    assert isinstance(error, RateLimitError)
    assert "in project 'p1'" in error.message
    assert await admitted(governor, subject("k2", ("p2",)))
