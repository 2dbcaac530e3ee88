"""Account-bound items sent back without a chain go home: a compacted window (the output of
`responses.compact`) sent as the next create's input, and a stateless client's encrypted
reasoning (`store: false`, as the Codex CLI runs), are served by the account that made them,
on several accounts, in memory and in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseIncludable
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway import origins
from gateway.app import create_app
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisConnection, RedisStore
from tests.support.affinity_upstream import (
    ACCOUNT_ENV,
    AFFINITY_ENV,
    account_of,
    affinity_config,
    tag,
)
from tests.support.configs import KEY_A, UPSTREAM_KEY, settings_from
from tests.support.integrate_bound import BoundCompactor
from tests.support.processes import Replica
from tests.support.redis_faults import FaultyRedis, metric
from tests.support.redis_server import RedisServer

REASONING: list[ResponseIncludable] = ["reasoning.encrypted_content"]


@pytest.fixture
async def bound(aiohttp_server: AiohttpServer) -> BoundCompactor:
    upstream = BoundCompactor()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


def gateway_config(bound: BoundCompactor, store: dict[str, Any] | None) -> dict[str, Any]:
    config = affinity_config(bound.url)
    config["providers"][0]["cooldown_s"] = 30
    if store is not None:
        config["store"] = store
    return config


@pytest.fixture(params=["memory", "redis"])
async def sdk(
    request: pytest.FixtureRequest, aiohttp_client: AiohttpClient, bound: BoundCompactor
) -> AsyncIterator[openai.AsyncOpenAI]:
    store = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = {"url": server.url, "prefix": f"o{id(bound)}:"}
    config = gateway_config(bound, store)
    gateway = await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


def compacts(bound: BoundCompactor) -> list[Any]:
    return [r for r in bound.requests if r.path == "/v1/responses/compact"]


def as_input(items: list[Any]) -> list[Any]:
    return [i.model_dump(mode="json", exclude_none=True, warnings=False) for i in items]


async def test_a_compacted_window_goes_back_to_the_account_that_compacted_it(
    sdk: openai.AsyncOpenAI, bound: BoundCompactor
) -> None:
    """The documented flow, with no prompt_cache_key and no previous_response_id: the create
    that sends the compacted window lands where the compaction was made, every time."""
    for n in range(12):
        compacted = await sdk.responses.compact(
            model="gpt-test", input=[{"role": "user", "content": f"task {n}"}]
        )
        made_by = account_of(compacts(bound)[-1])
        raw = await sdk.responses.with_raw_response.create(
            model="gpt-test", input=[*as_input(compacted.output), {"role": "user", "content": "go"}]
        )
        assert account_of(bound.requests[-1]) == made_by, n
        assert "x-gateway-affinity" not in raw.headers
        # And a compaction of the window (compacting it again) goes there too.
        window = as_input(compacted.output)
        await sdk.responses.compact(model="gpt-test", input=window)
        assert account_of(compacts(bound)[-1]) == made_by, n
    assert bound.refused == 0
    assert len({account_of(r) for r in compacts(bound)}) > 1  # they were made on several


async def test_a_window_whose_account_cools_down_moves_without_its_compaction(
    sdk: openai.AsyncOpenAI, bound: BoundCompactor
) -> None:
    while True:
        compacted = await sdk.responses.compact(
            model="gpt-test", input=[{"role": "user", "content": "hello"}]
        )
        if account_of(compacts(bound)[-1]) == "main":
            break
    bound.behaviour.fail_keys[UPSTREAM_KEY] = 500  # main fails, then cools down
    window = [*as_input(compacted.output), {"role": "user", "content": "go on"}]
    raw = await sdk.responses.with_raw_response.create(model="gpt-test", input=window)
    assert raw.headers["x-gateway-affinity"] == "switched"
    sent = bound.requests[-1]
    assert account_of(sent) != "main"
    assert '"compaction"' not in sent.body.decode()
    assert "hello" in sent.body.decode()
    assert "go on" in sent.body.decode()
    # Cooling down: the next one moves at once, without trying main again.
    tried = len(bound.requests)
    raw = await sdk.responses.with_raw_response.create(model="gpt-test", input=window)
    assert raw.headers["x-gateway-affinity"] == "switched"
    assert len(bound.requests) == tried + 1
    assert bound.refused == 0


async def test_stateless_encrypted_reasoning_stays_on_its_account(
    sdk: openai.AsyncOpenAI, bound: BoundCompactor
) -> None:
    """A Codex-style agent loop: store false, the encrypted reasoning asked for and sent back,
    streamed, no chain for the gateway."""
    for n in range(12):
        history: list[Any] = [{"role": "user", "content": f"job {n}"}]
        async with sdk.responses.stream(
            model="gpt-test", input=history, store=False, include=REASONING
        ) as stream:
            first = await stream.get_final_response()
        made_by = account_of(bound.requests[-1])
        history += as_input(first.output)
        history.append({"role": "user", "content": "next"})
        second = await sdk.responses.create(
            model="gpt-test", input=history, store=False, include=REASONING
        )
        assert account_of(bound.requests[-1]) == made_by, n
        assert second.output[-1].type == "reasoning"
    assert bound.refused == 0
    assert len(set(bound.accounts())) > 1


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    conn = RedisConnection(server.url, f"s{id(request)}:", 1.0)
    try:
        yield RedisStore(conn)
    finally:
        await conn.close()


async def test_origins_are_kept_per_owner_and_expire(store: Store) -> None:
    made = {"provider": "up", "account": "second", "model": "gpt-test"}
    await store.put_origins("team-a", {"d1": made, "d2": made}, 60)
    assert await store.get_origins("team-a", ["d1", "d3", "d2"]) == {"d1": made, "d2": made}
    # Another owner's request with the same items learns nothing of where they were made.
    assert await store.get_origins("team-b", ["d1", "d2"]) == {}
    await store.put_origins("team-a", {"d3": made}, 1)
    if isinstance(store, MemoryStore):
        store.clock = lambda: time.time() + 2
        assert await store.get_origins("team-a", ["d3"]) == {}
    else:
        assert isinstance(store, RedisStore)
        ttl = await store.client.ttl(store.key("origin", "d3", ":team-a"))
        assert 0 < ttl <= 1


# Redis failing -----------------------------------------------------------------------------


@pytest.fixture
def faulty() -> Iterator[FaultyRedis]:
    server = FaultyRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_paused_store_neither_fails_the_lookup_nor_holds_the_answer(
    aiohttp_client: AiohttpClient,
    bound: BoundCompactor,
    faulty: FaultyRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = affinity_config(bound.url, weights=(1,))  # one account: the hash finds it
    config["store"] = {"url": faulty.url, "prefix": "f:"}
    gateway = await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        compacted = await client.responses.compact(
            model="gpt-test", input=[{"role": "user", "content": "hello"}]
        )
        window = [*as_input(compacted.output), {"role": "user", "content": "go"}]
        before = (await (await gateway.get("/metrics")).read()).decode()
        with faulty.paused(), caplog.at_level(logging.WARNING, logger="gateway.origins"):
            answer = await client.responses.create(model="gpt-test", input=window, store=False)
            assert answer.status == "completed"
            # The record of the answer's bound items is not waited for: it is still under way.
            assert origins.pending()
            await origins.flush()
        after = (await (await gateway.get("/metrics")).read()).decode()
    for operation in ("get_origins", "put_origins"):
        counted = metric(after, "gateway_redis_errors_total", operation=operation)
        assert counted > metric(before, "gateway_redis_errors_total", operation=operation)
    messages = [r.getMessage() for r in caplog.records]
    assert any("routed by hash" in m for m in messages)
    assert any("not kept" in m for m in messages)
    assert tag(UPSTREAM_KEY) in bound.requests[-1].body.decode()


def test_a_bound_item_is_known_by_its_sealed_content() -> None:
    long = "n" * 300 + "x" * 5000 + "m" * 300
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": long}
    same = {"type": "reasoning", "summary": [], "encrypted_content": long}  # its id dropped
    assert origins.sealed(item) == origins.sealed(same)
    assert origins.sealed(item) != origins.sealed({**item, "encrypted_content": long[:-1] + "k"})
    assert origins.sealed(item) != origins.sealed({**item, "encrypted_content": "k" + long[1:]})
    assert origins.sealed({"type": "compaction", "encrypted_content": "short"}) is not None
    assert origins.sealed({"type": "reasoning", "summary": []}) is None  # nothing sealed
    assert origins.sealed({"type": "message", "encrypted_content": long}) is None


# Replicas sharing a Redis ------------------------------------------------------------------


@pytest.fixture
def replicas(
    bound: BoundCompactor,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[Replica]]:
    for name, value in ACCOUNT_ENV.items():
        monkeypatch.setenv(name, value)
    config = gateway_config(bound, {"url": redis_server.url, "prefix": f"{tmp_path.name}:"})
    started = [Replica(config, tmp_path, f"r{i}").start() for i in range(2)]
    yield started
    for replica in started:
        replica.stop()


async def test_a_window_compacted_on_one_replica_goes_home_from_another(
    replicas: list[Replica], bound: BoundCompactor
) -> None:
    """The record is written beside the answer, not before it: the other replica, asked at
    once, still finds it."""
    clients = [
        openai.AsyncOpenAI(base_url=f"{r.url}/v1", api_key=KEY_A, max_retries=0) for r in replicas
    ]
    try:
        for n in range(12):
            compacted = await clients[n % 2].responses.compact(
                model="gpt-test", input=[{"role": "user", "content": f"task {n}"}]
            )
            made_by = account_of(compacts(bound)[-1])
            window = [*as_input(compacted.output), {"role": "user", "content": "go"}]
            await clients[(n + 1) % 2].responses.create(model="gpt-test", input=window)
            assert account_of(bound.requests[-1]) == made_by, n
    finally:
        for client in clients:
            await client.close()
    assert bound.refused == 0
    assert len({account_of(r) for r in compacts(bound)}) > 1
