"""GET /admin/stats: request rates and errors, open streams and jobs, of the answering process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A
from tests.support.redis_faults import FaultyRedis
from tests.support.redis_server import RedisServer
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(params=["memory", "redis"])
def store_config(
    request: pytest.FixtureRequest, config: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config["store"] = {"url": server.url, "prefix": f"{tmp_path.name}:"}
    return config


async def stats(gateway: Client) -> dict[str, Any]:
    resp = await gateway.get("/admin/stats", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def sdk(gateway: Client) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0)


async def test_stats_take_only_the_admin_key(gateway: Client) -> None:
    for headers in ({}, {"Authorization": f"Bearer {KEY_A}"}):
        resp = await gateway.get("/admin/stats", headers=headers)
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
    body = await stats(gateway)
    assert body["object"] == "gateway.stats"
    assert body["scope"] == "process"
    assert body["replica"]["pid"] == os.getpid()
    assert body["replica"]["host"]


async def test_requests_and_errors_are_counted_from_api_traffic_only(
    gateway: Client, stub: StubUpstream
) -> None:
    before = await stats(gateway)
    async with sdk(gateway) as client:
        for _ in range(3):
            await client.responses.create(model="gpt-test", input="hi")
        stub.behaviour = Behaviour(status=400, body=b'{"error": {"message": "no"}}')
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="gpt-test", input="hi")
        stub.behaviour = Behaviour(status=500, body=b'{"error": {"message": "down"}}')
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="gpt-test", input="hi")
    # Health, metrics and admin requests are not the traffic the console shows.
    for path in ("/healthz", "/metrics"):
        assert (await gateway.get(path)).status == 200
    assert (await gateway.get("/admin/keys", headers=ADMIN)).status in (200, 501)
    after = await stats(gateway)
    got, was = after["requests"], before["requests"]
    assert got["total"] - was["total"] == 5
    assert got["client_errors"] - was["client_errors"] == 1
    assert got["server_errors"] - was["server_errors"] == 1
    assert got["per_second"] > 0
    assert got["window_s"] > 0
    assert 0 < got["error_rate"] < 1
    assert 0 < got["client_error_rate"] < 1


async def test_open_streams_are_shown_while_they_last(gateway: Client, stub: StubUpstream) -> None:
    before = (await stats(gateway))["streams"]["open"]
    stub.behaviour = Behaviour(stall_after=2)
    async with sdk(gateway) as client:
        stream = await client.responses.create(model="gpt-test", input="hi", stream=True)
        first = await stream.__anext__()
        assert first.type == "response.created"
        assert (await stats(gateway))["streams"]["open"] == before + 1
        await stream.close()
    async with asyncio.timeout(5):
        while (await stats(gateway))["streams"]["open"] != before:
            await asyncio.sleep(0.02)


async def test_jobs_waiting_for_a_worker_are_queued(
    make_gateway: MakeGateway, store_config: dict[str, Any]
) -> None:
    store_config["jobs"] = {"workers": 0}
    gateway = await make_gateway(store_config)
    assert (await stats(gateway))["jobs"]["queued"] == 0
    async with sdk(gateway) as client:
        for _ in range(2):
            await client.responses.create(model="gpt-test", input="later", background=True)
    jobs = (await stats(gateway))["jobs"]
    assert jobs["queued"] == 2
    assert jobs["running"] == 0
    assert jobs["workers"] == 0


async def test_running_and_failed_jobs(
    make_gateway: MakeGateway, store_config: dict[str, Any], stub: StubUpstream
) -> None:
    gateway = await make_gateway(store_config)
    before = (await stats(gateway))["jobs"]
    stub.behaviour = Behaviour(delay_s=3600)
    async with sdk(gateway) as client:
        slow = await client.responses.create(model="gpt-test", input="slow", background=True)
        async with asyncio.timeout(10):
            while (await stats(gateway))["jobs"]["running"] != 1:
                await asyncio.sleep(0.02)
        assert (await stats(gateway))["jobs"]["queued"] == 0
        await client.responses.cancel(slow.id)
        stub.behaviour = Behaviour(status=400, body=b'{"error": {"message": "refused"}}')
        bad = await client.responses.create(model="gpt-test", input="bad", background=True)
        async with asyncio.timeout(10):
            while (await client.responses.retrieve(bad.id)).status != "failed":
                await asyncio.sleep(0.02)
    async with asyncio.timeout(10):
        while (jobs := (await stats(gateway))["jobs"])["running"] != 0:
            await asyncio.sleep(0.02)
    assert jobs["failed"] - before["failed"] == 1
    assert jobs["cancelled"] - before["cancelled"] == 1
    assert jobs["submitted"] - before["submitted"] == 2


@pytest.fixture
def faulty() -> Iterator[FaultyRedis]:
    server = FaultyRedis()
    server.start()
    yield server
    server.kill()


async def test_a_store_that_does_not_answer_leaves_the_queue_unknown(
    make_gateway: MakeGateway, config: dict[str, Any], faulty: FaultyRedis
) -> None:
    config["store"] = {"url": faulty.url}
    gateway = await make_gateway(config)
    assert (await stats(gateway))["jobs"]["queued"] == 0
    with faulty.paused():
        started = time.monotonic()
        body = await stats(gateway)
        assert time.monotonic() - started < 5
    assert body["jobs"]["queued"] is None
    assert body["streams"]["open"] >= 0
    faulty.kill()
    assert (await stats(gateway))["jobs"]["queued"] is None
