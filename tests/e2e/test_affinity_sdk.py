"""Routing affinity as the official SDK's users meet it: over several upstream accounts, chains
and conversations stay where they began, prompts stay on one account's cache, and a chain that
must move says so."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app
from tests.support.affinity_upstream import (
    ACCOUNT_ENV,
    ACCOUNT_KEYS,
    AFFINITY_ENV,
    BoundUpstream,
    affinity_config,
)
from tests.support.configs import KEY_A, UPSTREAM_KEY, settings_from
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer

KEY_OF = {"main": UPSTREAM_KEY, **ACCOUNT_KEYS}


@pytest.fixture
async def bound(aiohttp_server: AiohttpServer) -> BoundUpstream:
    upstream = BoundUpstream()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


async def _sdk(
    aiohttp_client: AiohttpClient, config: dict[str, Any]
) -> AsyncIterator[openai.AsyncOpenAI]:
    gateway = await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def sdk(
    aiohttp_client: AiohttpClient, bound: BoundUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on a gateway over three equal accounts."""
    async for client in _sdk(aiohttp_client, affinity_config(bound.url)):
        yield client


@pytest.fixture
async def weighted_sdk(
    aiohttp_client: AiohttpClient, bound: BoundUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on a gateway over two accounts weighted 1 (main) and 3 (second)."""
    async for client in _sdk(aiohttp_client, affinity_config(bound.url, (1, 3))):
        yield client


async def test_a_three_turn_chain_stays_on_one_account(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    first = await sdk.responses.create(model="gpt-test", input="one", prompt_cache_key="a")
    second = await sdk.responses.create(
        model="gpt-test", input="two", previous_response_id=first.id, prompt_cache_key="b"
    )
    raw = await sdk.responses.with_raw_response.create(
        model="gpt-test", input="three", previous_response_id=second.id, prompt_cache_key="c"
    )
    third = raw.parse()
    assert "x-gateway-affinity" not in raw.headers
    assert third.status == "completed"
    assert len(bound.tally()) == 1
    assert [i.type for i in third.output] == ["message", "reasoning"]
    assert bound.refused == 0


@pytest.mark.parametrize("status", [500, 429])
async def test_a_chain_on_a_cooling_account_moves_and_says_so(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream, status: int
) -> None:
    first = await sdk.responses.create(model="gpt-test", input="one")
    made_by = bound.accounts()[0]
    bound.behaviour.fail_keys = {KEY_OF[made_by]: status}
    raw = await sdk.responses.with_raw_response.create(
        model="gpt-test", input="two", previous_response_id=first.id
    )
    assert raw.headers["x-gateway-affinity"] == "switched"
    second = raw.parse()
    assert second.status == "completed"
    assert bound.accounts()[-1] != made_by
    assert [i["type"] for i in bound.last.json["input"]] == ["message", "message", "message"]
    # Streamed, the header is on the stream's response too; the account still cools.
    async with sdk.responses.with_streaming_response.create(
        model="gpt-test", input="two again", previous_response_id=first.id, stream=True
    ) as streamed:
        assert streamed.headers["x-gateway-affinity"] == "switched"
        assert "response.completed" in "".join([line async for line in streamed.iter_lines()])
    # Chained on the moved turn, the next one stays where that went.
    moved_to = bound.accounts()[-2]
    raw = await sdk.responses.with_raw_response.create(
        model="gpt-test", input="three", previous_response_id=second.id
    )
    assert "x-gateway-affinity" not in raw.headers
    assert bound.accounts()[-1] == moved_to
    assert bound.refused == 0


async def test_twenty_requests_with_one_prompt_cache_key_hit_one_account(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    for n in range(20):
        await sdk.responses.create(model="gpt-test", input=f"q{n}", prompt_cache_key="agent-v1")
    assert len(bound.tally()) == 1


async def test_many_cache_keys_spread_by_account_weight(
    weighted_sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    """200 distinct prompts, accounts weighted 1:3. The heavy account's share is
    Binomial(200, 0.75): mean 150, sd 6.1; 120..180 is about five sd either side."""
    for n in range(200):
        await weighted_sdk.responses.create(
            model="gpt-test", input="q", prompt_cache_key=f"user-{n}", store=False
        )
    tally = bound.tally()
    assert 120 <= tally["second"] <= 180, tally
    assert tally["main"] + tally["second"] == 200


async def test_a_conversation_stays_on_one_account(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    conv = await sdk.conversations.create()
    for n in range(4):
        raw = await sdk.responses.with_raw_response.create(
            model="gpt-test", input=f"c{n}", conversation=conv.id, prompt_cache_key=f"k{n}"
        )
        assert "x-gateway-affinity" not in raw.headers
    assert len(bound.tally()) == 1
    sent = bound.last.json["input"]
    assert len([i for i in sent if i.get("type") == "reasoning"]) == 3
    assert bound.refused == 0


@pytest.fixture
def replicas(
    bound: BoundUpstream,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[Replica]]:
    for name, value in ACCOUNT_ENV.items():
        monkeypatch.setenv(name, value)
    config = affinity_config(bound.url)
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    started = [Replica(config, tmp_path, f"r{i}").start() for i in range(2)]
    yield started
    for replica in started:
        replica.stop()


async def test_replicas_sharing_redis_send_a_chain_to_one_account(
    replicas: list[Replica], bound: BoundUpstream
) -> None:
    clients = [
        openai.AsyncOpenAI(base_url=f"{r.url}/v1", api_key=KEY_A, max_retries=0) for r in replicas
    ]
    try:
        previous = (await clients[0].responses.create(model="gpt-test", input="start")).id
        for n in range(6):
            client = clients[(n + 1) % 2]  # replica 2 first, then alternating
            turn = await client.responses.create(
                model="gpt-test",
                input=f"turn {n}",
                previous_response_id=previous,
                prompt_cache_key=f"k{n}",
            )
            previous = turn.id
        (first_account,) = Counter(bound.accounts())
        bound.requests.clear()
        conv = await clients[0].conversations.create()
        for n in range(6):
            await clients[n % 2].responses.create(
                model="gpt-test", input=f"c{n}", conversation=conv.id, prompt_cache_key=f"c{n}"
            )
        assert len(Counter(bound.accounts())) == 1
        # The chain's account fails on replica 2: the chain moves there, and replica 1, which
        # saw no failure, follows it to the new account (the record, in Redis, says where).
        bound.behaviour.fail_keys = {KEY_OF[first_account]: 500}
        raw = await clients[1].responses.with_raw_response.create(
            model="gpt-test", input="moved", previous_response_id=previous
        )
        assert raw.headers["x-gateway-affinity"] == "switched"
        moved_to = bound.accounts()[-1]
        assert moved_to != first_account
        raw = await clients[0].responses.with_raw_response.create(
            model="gpt-test", input="after", previous_response_id=raw.parse().id
        )
        assert "x-gateway-affinity" not in raw.headers
        assert bound.accounts()[-1] == moved_to
        assert bound.refused == 0
    finally:
        for client in clients:
            await client.close()
