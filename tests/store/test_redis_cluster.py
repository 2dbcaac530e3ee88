"""The gateway on a three-master Redis Cluster (`redis+cluster://`): every Redis feature works
there, in process and across two `gateway serve` processes sharing the cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.errors import ConfigError
from gateway.jobs import Event
from gateway.jobs.redis import RedisJobs
from gateway.keys import DEPS
from gateway.store.redis import RedisConnection
from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A, KEY_B, settings_from
from tests.support.processes import Replica
from tests.support.redis_cluster import LoopbackCluster
from tests.support.redis_server import free_port
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LoopbackCluster]:
    cluster = LoopbackCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_config(
    config: dict[str, Any], redis_cluster: LoopbackCluster, tmp_path: Path
) -> dict[str, Any]:
    # A prefix per test: its keys (and its limits' counters) are its own.
    config["store"] = {"url": redis_cluster.url, "prefix": f"{tmp_path.name}:"}
    config["limits"] = {"redis_timeout_ms": 5000}  # exact limits even on a loaded machine
    return config


@pytest.fixture
async def on_cluster(make_gateway: MakeGateway, cluster_config: dict[str, Any]) -> Client:
    return await make_gateway(cluster_config)


@pytest.fixture
async def sdk(on_cluster: Client) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=str(on_cluster.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


def masters_holding(cluster: LoopbackCluster, prefix: str) -> int:
    """How many masters hold a key of this prefix."""
    return sum(1 for port in cluster.ports if any(cluster.node(port).scan_iter(f"{prefix}*")))


async def test_ready_names_the_redis_store(on_cluster: Client) -> None:
    resp = await on_cluster.get("/readyz")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"status": "ok", "store": "redis"}


async def test_responses_chain_and_conversations(
    sdk: openai.AsyncOpenAI, stub: StubUpstream, redis_cluster: LoopbackCluster, tmp_path: Path
) -> None:
    first = await sdk.responses.create(model="gpt-test", input="first turn")
    assert (await sdk.responses.retrieve(first.id)).output_text == first.output_text
    second = await sdk.responses.create(
        model="gpt-test", input="second turn", previous_response_id=first.id
    )
    sent = [i["content"][0]["text"] for i in stub.last.json["input"]]
    assert sent == ["first turn", first.output_text, "second turn"]

    conv = await sdk.conversations.create(items=[{"role": "user", "content": "c1"}])
    await sdk.conversations.items.create(conv.id, items=[{"role": "user", "content": "c2"}])
    await sdk.responses.create(model="gpt-test", input="c3", conversation=conv.id)
    assert [i["content"][0]["text"] for i in stub.last.json["input"]] == ["c1", "c2", "c3"]
    items = [i async for i in sdk.conversations.items.list(conv.id, order="asc")]
    assert len(items) == 4
    assert items[0].id is not None
    await sdk.conversations.items.delete(items[0].id, conversation_id=conv.id)
    assert len([i async for i in sdk.conversations.items.list(conv.id)]) == 3

    for n in range(6):  # more ids, more slots: the keys spread over the masters
        await sdk.responses.create(model="gpt-test", input=f"spread {n}")
    assert masters_holding(redis_cluster, tmp_path.name) >= 2

    await sdk.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(second.id)
    await sdk.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.retrieve(conv.id)


async def test_background_job_runs_to_completion(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(between_s=0.01)
    first = await sdk.responses.create(model="gpt-test", input="in the background", background=True)
    assert first.status == "queued"
    async with asyncio.timeout(10):
        while (final := await sdk.responses.retrieve(first.id)).status in ("queued", "in_progress"):
            await asyncio.sleep(0.05)
    assert final.status == "completed"
    assert "in the background" in final.output_text


async def test_admin_key_made_used_and_deleted(on_cluster: Client) -> None:
    made = await on_cluster.post("/admin/keys", json={"models": ["mock-*"]}, headers=ADMIN)
    assert made.status == 201, await made.text()
    created = await made.json()
    auth = {"Authorization": f"Bearer {created['key']}"}
    body = {"model": "mock-model", "input": "hi", "store": False}
    assert (await on_cluster.post("/v1/responses", json=body, headers=auth)).status == 200
    listed = await (await on_cluster.get("/admin/keys", headers=ADMIN)).json()
    assert created["id"] in {k["id"] for k in listed["data"]}
    gone = await on_cluster.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert gone.status == 200
    assert (await on_cluster.post("/v1/responses", json=body, headers=auth)).status == 401


async def test_rpm_and_concurrency_refuse_exactly(
    make_gateway: MakeGateway, cluster_config: dict[str, Any], stub: StubUpstream
) -> None:
    cluster_config["auth"]["keys"][0]["rpm"] = 5
    cluster_config["auth"]["keys"][1]["max_concurrent"] = 1
    gateway = await make_gateway(cluster_config)
    body = {"model": "cheap", "input": "x", "store": False}

    async def post(key: str) -> tuple[int, Any]:
        resp = await gateway.post(
            "/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        return resp.status, await resp.json()

    answers = await asyncio.gather(*(post(KEY_A) for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 5 + [429] * 3
    refused = next(b for s, b in answers if s == 429)
    assert refused["error"]["code"] == "rate_limit_exceeded"

    stub.behaviour = Behaviour(delay_s=0.5)
    seen = len(stub.requests)
    slow = asyncio.create_task(post(KEY_B))
    async with asyncio.timeout(5):  # the first one holds its lease while upstream answers
        while len(stub.requests) == seen:
            await asyncio.sleep(0.01)
    status, second = await post(KEY_B)
    assert status == 429, second
    assert (await slow)[0] == 200
    stub.behaviour = Behaviour()
    assert (await post(KEY_B))[0] == 200  # the lease went back when the first one ended


async def test_usage_report_and_budget_count_every_request(
    make_gateway: MakeGateway, cluster_config: dict[str, Any]
) -> None:
    cluster_config["auth"]["keys"][0].update(budget_usd=0.000001, budget_period="day", tpm=10**6)
    gateway = await make_gateway(cluster_config)
    body = {"model": "gpt-test", "input": "count me", "store": False}
    auth = {"Authorization": f"Bearer {KEY_A}"}
    statuses = [(await gateway.post("/v1/responses", json=body, headers=auth)).status]
    async with asyncio.timeout(5):  # the day's budget, spent on the cluster, stops the key
        while statuses[-1] == 200:
            statuses.append((await gateway.post("/v1/responses", json=body, headers=auth)).status)
    assert statuses[-1] == 429
    served = statuses.count(200)
    async with asyncio.timeout(5):
        while True:
            report = await (await gateway.get("/admin/usage?group_by=key", headers=ADMIN)).json()
            rows = {row["key"]: row for row in report["data"]}
            if rows.get("team-a", {}).get("requests") == served:
                break
            await asyncio.sleep(0.05)
    assert rows["team-a"]["total_tokens"] > 0
    assert rows["team-a"]["cost_usd"] >= 0.000001


@pytest.fixture
def replicas(cluster_config: dict[str, Any], tmp_path: Path) -> Iterator[list[Replica]]:
    cluster_config["auth"]["keys"][0]["rpm"] = 10
    started = [Replica(cluster_config, tmp_path, f"r{i}").start() for i in range(2)]
    yield started
    for replica in started:
        replica.stop()


async def test_two_processes_share_the_cluster(replicas: list[Replica], stub: StubUpstream) -> None:
    one, two = replicas
    async with (
        openai.AsyncOpenAI(base_url=f"{one.url}/v1", api_key=KEY_B, max_retries=0) as a,
        openai.AsyncOpenAI(base_url=f"{two.url}/v1", api_key=KEY_B, max_retries=0) as b,
    ):
        first = await a.responses.create(model="cheap", input="first turn")
        assert (await b.responses.retrieve(first.id)).output_text == first.output_text
        await b.responses.create(model="cheap", input="second", previous_response_id=first.id)
        conv = await b.conversations.create(items=[{"role": "user", "content": "c1"}])
        await a.responses.create(model="cheap", input="c2", conversation=conv.id)
        assert [i["content"][0]["text"] for i in stub.last.json["input"]] == ["c1", "c2"]
    async with aiohttp.ClientSession() as http:

        async def one_request(i: int) -> int:
            async with http.post(
                f"{replicas[i % 2].url}/v1/responses",
                json={"model": "mock-model", "input": "x", "store": False},
                headers={"Authorization": f"Bearer {KEY_A}"},
            ) as resp:
                return resp.status

        statuses = await asyncio.gather(*(one_request(i) for i in range(12)))
    # The key's 10 a minute hold across both processes.
    assert sorted(statuses) == [200] * 10 + [429] * 2


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_unreachable_cluster_is_a_clear_503(
    make_gateway: MakeGateway, config: dict[str, Any], scheme: str
) -> None:
    config["store"] = {"url": f"{scheme}://127.0.0.1:{free_port()}/"}
    config["limits"] = {"on_redis_error": "closed"}
    config["auth"]["keys"][0]["rpm"] = 100
    gateway = await make_gateway(config)
    ready = await gateway.get("/readyz")
    assert ready.status == 503, await ready.text()
    assert (await ready.json())["status"] == "unavailable"
    for key, body, code in [
        (KEY_A, {"model": "mock-model", "input": "x", "store": False}, "limits_unavailable"),
        (KEY_B, {"model": "mock-model", "input": "x"}, "store_unavailable"),
    ]:
        auth = {"Authorization": f"Bearer {key}"}
        resp = await gateway.post("/v1/responses", json=body, headers=auth)
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["error"]["code"] == code
        assert resp.headers["retry-after"] == "1"


async def test_many_commands_at_once_each_get_a_connection(
    redis_cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """As on one Redis, commands in flight are not capped per node: a burst of requests
    (each writing its stored response) is not refused by the client itself."""
    conn = RedisConnection(redis_cluster.url, f"{tmp_path.name}:", 5.0)
    key = conn.key("burst", "one")  # one slot: every command on the same master
    events = conn.key("burst", "events")
    try:
        for _ in range(2):  # the second burst finds the connections the first one opened
            done = await asyncio.gather(
                *(conn.client.hset(key, str(n), b"x" * 1000) for n in range(300)),
                *(conn.blocking.xread({events: "$"}, block=50) for _ in range(150)),
                return_exceptions=True,
            )
            assert [d for d in done if isinstance(d, BaseException)] == []
        assert await conn.client.hlen(key) == 300
    finally:
        await conn.close()


async def test_job_queue_take_reclaim_and_events(
    redis_cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """The queue's consumer group on the cluster: a job taken by one consumer and never
    finished is reclaimed by another, and its events are read back, blocking until they come."""
    conn = RedisConnection(redis_cluster.url, f"{tmp_path.name}:", 5.0)
    jobs = RedisJobs(conn)
    job = {"owner": "a", "input_items": [], "chain": []}
    try:
        await jobs.enqueue("resp_1", job, {"id": "resp_1", "status": "queued"}, 60)
        assert await jobs.take("one", 10, 100) == ["resp_1"]
        assert await jobs.take("two", 10, 50) == []  # blocks, then nothing new
        assert await jobs.reclaim("two", 0, 10) == ["resp_1"]
        assert await jobs.start_attempt("resp_1", 60) == 1
        waiting = asyncio.create_task(jobs.read_events("resp_1", "0-0", 5000))
        await jobs.append_events("resp_1", [Event(1, b"{}", "response.created")], 60)
        events, _ = await waiting
        assert [e.seq for e in events] == [1]
        assert await jobs.write("resp_1", "completed", {"id": "resp_1"}, 60)
        await jobs.done("resp_1")
        assert await jobs.status("resp_1") == "completed"
        await jobs.check()
    finally:
        await conn.close()


async def test_a_master_down_answers_503_promptly_and_recovers(
    make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    # A cluster of its own (joined by hand, without redis-cli); a node timeout long enough
    # that the stopped master is never marked failed, so the cluster takes it back at once.
    cluster = LoopbackCluster(node_timeout_ms=30_000)
    cluster.start(use_cli=False)
    try:
        config["store"] = {"url": cluster.url}
        gateway = await make_gateway(config)
        auth = {"Authorization": f"Bearer {KEY_A}"}
        body = {"model": "mock-model", "input": "x"}
        assert (await gateway.post("/v1/responses", json=body, headers=auth)).status == 200
        cluster.stop_node(1)
        for path, payload in [("/readyz", None), *[("/v1/responses", body)] * 4]:
            started = time.monotonic()
            if payload is None:
                resp = await gateway.get(path)
            else:
                resp = await gateway.post(path, json=payload, headers=auth)
            # What the stopped master holds is unavailable: a prompt 503, never a 500 or a wait.
            assert resp.status in (200, 503), await resp.text()
            assert time.monotonic() - started < 2
            if path == "/readyz":
                assert resp.status == 503
        cluster.start_node(1)
        async with asyncio.timeout(10):
            while (await gateway.get("/readyz")).status != 200:
                await asyncio.sleep(0.1)
        for _ in range(4):
            assert (await gateway.post("/v1/responses", json=body, headers=auth)).status == 200
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis+cluster://10.0.0.1:6379/", True),
        ("redis+cluster://user:pw@10.0.0.1:6379", True),
        ("rediss+cluster://node.example.com:6379/0?ssl_ca_certs=/ca.crt", True),
        ("redis+cluster://10.0.0.1:6379/1", False),  # a Cluster has database 0 only
        ("redis+sentinel://10.0.0.1:26379/", False),
    ],
)
def test_cluster_store_urls_in_the_config(config: dict[str, Any], url: str, ok: bool) -> None:
    config["store"] = {"url": url}
    if ok:
        assert settings_from(config).store.url == url
    else:
        with pytest.raises(ConfigError) as err:
            settings_from(config)
        assert err.value.problems[0].startswith("store.url: ")


async def test_flushed_nodes_and_scripts_leave_every_feature_working(
    make_gateway: MakeGateway,
    cluster_config: dict[str, Any],
    redis_cluster: LoopbackCluster,
    tmp_path: Path,
) -> None:
    """Every master emptied of keys and scripts (as after restarts): the scripts are loaded
    again on every master, the job queue's group made again, and settlements reach Redis."""
    cluster_config["auth"]["keys"][0]["rpm"] = 1000
    gateway = await make_gateway(cluster_config)
    auth = {"Authorization": f"Bearer {KEY_A}"}
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        job = await sdk.responses.create(model="gpt-test", input="job", background=True)
        async with asyncio.timeout(10):
            while (await sdk.responses.retrieve(job.id)).status != "completed":
                await asyncio.sleep(0.05)
        redis_cluster.flush()
        for port in redis_cluster.ports:
            redis_cluster.node(port).script_flush()

        resp = await gateway.post(
            "/v1/responses", json={"model": "gpt-test", "input": "after"}, headers=auth
        )
        assert resp.status == 200
        assert resp.headers["x-ratelimit-remaining-requests"] == "999"  # counted in Redis again
        usage = f"{tmp_path.name}:rl:{{limits}}:usage"
        direct = redis_cluster.client()

        def settled() -> bool:  # the pipelined settlement loaded its script again
            return bool(direct.xlen(usage))

        try:
            async with asyncio.timeout(5):
                while not settled():
                    await asyncio.sleep(0.05)
        finally:
            direct.close()
        assert not gateway.app[DEPS].governor.memory.stream  # nothing fell back
        after = (await resp.json())["id"]
        chained = await sdk.responses.create(
            model="gpt-test", input="chained", previous_response_id=after
        )
        assert chained.status == "completed"
        conv = await sdk.conversations.create(items=[{"role": "user", "content": "c1"}])
        await sdk.responses.create(model="gpt-test", input="c2", conversation=conv.id)
        assert len([i async for i in sdk.conversations.items.list(conv.id)]) == 3
        again = await sdk.responses.create(model="gpt-test", input="job two", background=True)
        async with asyncio.timeout(10):
            while (await sdk.responses.retrieve(again.id)).status != "completed":
                await asyncio.sleep(0.05)
        made = await gateway.post("/admin/keys", json={"id": "made-after"}, headers=ADMIN)
        assert made.status == 201
    assert (await gateway.get("/readyz")).status == 200
