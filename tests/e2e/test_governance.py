"""Limits exact across three real gateway processes on one Redis, through the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.configs import ADMIN_KEY, KEY_A, KEY_B
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer
from tests.support.stub import StubUpstream


@pytest.fixture
def replicas(
    config: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> Iterator[list[Replica]]:
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    # Exactness is the point here: a loaded test machine must not trip the fail-open timeout.
    config["limits"] = {"redis_timeout_ms": 5000}
    key = config["auth"]["keys"][0]
    key.update(rpm=60, projects=["proj-a", "proj-x"])
    config["auth"]["keys"][1].update(budget_usd=0.0001, budget_period="day")
    config["models"][1]["price"] = {"input": 10.0, "output": 10.0}
    started = [Replica(config, tmp_path, f"r{i}").start() for i in range(3)]
    yield started
    for replica in started:
        replica.stop()


async def test_rpm_is_exact_across_three_replicas(
    replicas: list[Replica], stub: StubUpstream
) -> None:
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> tuple[int, dict[str, str], Any]:
            replica = replicas[i % 3]
            async with http.post(
                f"{replica.url}/v1/responses",
                json={"model": "gpt-test", "input": "x", "store": False},
                headers={"Authorization": f"Bearer {KEY_A}"},
            ) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        answers = await asyncio.gather(*(one(i) for i in range(100)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == 60
    assert statuses.count(429) == 40
    _, headers, body = next(a for a in answers if a[0] == 429)
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["type"] == "requests"
    assert int(headers["Retry-After"]) >= 1
    assert int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    _, served, _ = next(a for a in answers if a[0] == 200)
    assert served["x-ratelimit-limit-requests"] == "60"
    assert len(stub.requests) == 60


async def until_settled(replica: Replica, key_id: str, requests: int) -> None:
    """Poll `/admin/usage` until `requests` of the key are settled: each process settles a
    request just after its answer went out."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with aiohttp.ClientSession() as http, asyncio.timeout(10):
        while True:
            async with http.get(f"{replica.url}/admin/usage?group_by=key", headers=admin) as resp:
                assert resp.status == 200
                rows = {row["key"]: row for row in (await resp.json())["data"]}
            if rows.get(key_id, {}).get("requests", 0) >= requests:
                return
            await asyncio.sleep(0.02)


async def test_budget_stops_at_the_limit(replicas: list[Replica], stub: StubUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{replicas[0].url}/v1", api_key=KEY_B, max_retries=2
    ) as client:
        first = await client.responses.with_raw_response.create(model="cheap", input="x" * 40)
        assert float(first.headers["x-gateway-cost-usd"]) > 0.0001
        await until_settled(replicas[1], "team-b", 1)
        with pytest.raises(openai.RateLimitError) as err:
            await client.responses.create(model="cheap", input="x")
    assert err.value.code == "insufficient_quota"
    assert err.value.response.headers["x-should-retry"] == "false"
    assert len(stub.requests) == 1  # the SDK did not retry the refusal


async def test_attribution_totals_add_up(replicas: list[Replica]) -> None:
    async with aiohttp.ClientSession() as http:
        for i, projects in enumerate(["proj-a", "proj-x", "proj-a,proj-x", ""]):
            headers = {"Authorization": f"Bearer {KEY_A}"}
            if projects:
                headers["attribution"] = projects
            async with http.post(
                f"{replicas[i % 3].url}/v1/responses",
                headers=headers,
                json={"model": "mock-model", "input": "count me"},
            ) as resp:
                assert resp.status == 200
        async with http.post(
            f"{replicas[0].url}/v1/responses",
            headers={"Authorization": f"Bearer {KEY_A}", "attribution": "proj-b"},
            json={"model": "mock-model", "input": "x"},
        ) as refused:
            assert refused.status == 403
            assert (await refused.json())["error"]["param"] == "attribution"
        await until_settled(replicas[1], "team-a", 4)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.get(
            f"{replicas[1].url}/admin/usage?group_by=project", headers=admin
        ) as resp:
            report = await resp.json()
        async with http.get(f"{replicas[2].url}/admin/usage?group_by=key", headers=admin) as resp:
            by_key = await resp.json()
    rows = {row["project"]: row for row in report["data"]}
    assert rows["proj-a"]["requests"] == 3  # its own, the shared one and the default
    assert rows["proj-x"]["requests"] == 2
    key_rows = {row["key"]: row for row in by_key["data"]}
    assert key_rows["team-a"]["requests"] == 4
    assert key_rows["team-a"]["total_tokens"] == (
        key_rows["team-a"]["input_tokens"] + key_rows["team-a"]["output_tokens"]
    )


async def test_sdk_waits_the_advertised_retry_after(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][0]["max_concurrent"] = 1
    gateway = await make_gateway(config)
    from tests.support.stub import Behaviour

    stub.behaviour = Behaviour(delay_s=0.6)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=2
    ) as client:
        slow = asyncio.create_task(client.responses.create(model="gpt-test", input="slow"))
        async with asyncio.timeout(5):  # admitted: it holds the one place until it ends
            while not stub.requests:
                await asyncio.sleep(0.01)
        started = time.monotonic()
        waited = await client.responses.create(model="gpt-test", input="waits")
        elapsed = time.monotonic() - started
        await slow
    assert waited.status == "completed"
    # The refusal said retry-after-ms 1000; the SDK waited that long, then was served.
    assert 0.9 < elapsed < 3


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_redis_killed_and_restarted_under_each_policy(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream, policy: str
) -> None:
    redis = RedisServer()
    redis.start()
    config["store"] = {"url": redis.url}
    config["limits"] = {"on_redis_error": policy, "redis_timeout_ms": 200}
    config["auth"]["keys"][0]["rpm"] = 1000
    gateway = await make_gateway(config)
    body = {"model": "gpt-test", "input": "x", "store": False}
    auth = {"Authorization": f"Bearer {KEY_A}"}
    try:
        assert (await gateway.post("/v1/responses", json=body, headers=auth)).status == 200
        redis.stop()
        down = await gateway.post("/v1/responses", json=body, headers=auth)
        if policy == "open":
            assert down.status == 200
        else:
            assert down.status == 503
            assert down.headers["retry-after"] == "1"
            assert (await down.json())["error"]["code"] == "limits_unavailable"
        redis.start()
        await asyncio.sleep(1.1)  # the limiter probes Redis again after a second
        again = await gateway.post("/v1/responses", json=body, headers=auth)
        assert again.status == 200
        assert again.headers["x-ratelimit-limit-requests"] == "1000"
    finally:
        redis.stop()
