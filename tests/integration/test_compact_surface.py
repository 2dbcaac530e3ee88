"""POST /responses/compact meets the other features: its input (and the stored context its
previous_response_id brings in) goes through the guardrails, and a chained compaction goes to
the account that made the items it compacts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app
from tests.conftest import MakeGateway
from tests.support.affinity_upstream import (
    AFFINITY_ENV,
    BoundUpstream,
    account_of,
    affinity_config,
    tag,
)
from tests.support.configs import KEY_A, UPSTREAM_KEY, settings_from
from tests.support.integrate_bound import BoundCompactor
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
# For gpt-test only: a chain made with `cheap` (the same upstream) is kept as it was sent.
RULES: list[dict[str, Any]] = [
    {"name": "pii", "apply_to": ["input"], "detect": ["email"], "models": ["gpt-test"]},
    {
        "name": "cards",
        "apply_to": ["input"],
        "detect": ["credit_card"],
        "action": "block",
        "models": ["gpt-test"],
    },
]


@pytest.fixture
async def client(make_gateway: MakeGateway, config: dict[str, Any]) -> AsyncIterator[Any]:
    config["guardrails"] = RULES
    gateway = await make_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        yield sdk


def compacts(stub: StubUpstream) -> list[Any]:
    return [r for r in stub.requests if r.path == "/v1/responses/compact"]


async def test_compact_input_is_redacted_before_the_upstream_reads_it(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    raw = await client.responses.with_raw_response.compact(
        model="gpt-test",
        instructions=f"Answer {EMAIL}.",
        input=[{"role": "user", "content": f"mail {EMAIL} the summary"}],
    )
    sent = compacts(stub)[-1].body.decode()
    assert EMAIL not in sent
    assert "[REDACTED:email]" in sent
    assert raw.headers["x-gateway-guardrails"] == "pii"


async def test_compact_of_a_chain_scans_the_stored_context(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    """The chain was made with a model no rule covers, so it was kept as sent; compacting it
    with one the rules cover sends it upstream again, scanned."""
    first = await client.responses.create(model="cheap", input=f"note: {EMAIL}")
    assert EMAIL in stub.last.body.decode()
    raw = await client.responses.with_raw_response.compact(
        model="gpt-test", previous_response_id=first.id
    )
    sent = compacts(stub)[-1].body.decode()
    assert EMAIL not in sent
    assert "note: [REDACTED:email]" in sent
    assert raw.headers["x-gateway-guardrails"] == "pii"


async def test_a_blocked_compact_is_refused_and_never_sent(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.compact(
            model="gpt-test", input=[{"role": "user", "content": f"card {CARD}"}]
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("content_blocked", "input[0].content")
    assert CARD not in str(error)
    assert compacts(stub) == []


async def test_a_blocked_stored_context_names_previous_response_id(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    first = await client.responses.create(model="cheap", input=f"card {CARD}")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.compact(model="gpt-test", previous_response_id=first.id)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("content_blocked", "previous_response_id")
    assert CARD not in str(error)
    assert compacts(stub) == []


# Affinity -------------------------------------------------------------------------------


@pytest.fixture
async def bound(aiohttp_server: AiohttpServer) -> BoundUpstream:
    upstream = BoundCompactor()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


async def _sdk_over(
    aiohttp_client: AiohttpClient, bound: BoundUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    config = affinity_config(bound.url)
    config["providers"][0]["cooldown_s"] = 30
    gateway = await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def sdk(
    aiohttp_client: AiohttpClient, bound: BoundUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    async for client in _sdk_over(aiohttp_client, bound):
        yield client


async def test_a_chained_compact_goes_to_the_account_that_served_the_chain(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    for n in range(12):  # unrelated prompts: over three accounts, 12 land on several
        first = await sdk.responses.create(model="gpt-test", input=f"turn {n}")
        served = bound.accounts()[-1]
        await sdk.responses.compact(model="gpt-test", previous_response_id=first.id)
        compact = compacts(bound)[-1]
        assert account_of(compact) == served, n
        # The account's own encrypted reasoning went with it.
        assert (
            tag(compact.headers["Authorization"].removeprefix("Bearer ")) in compact.body.decode()
        )
    assert len(set(bound.accounts())) > 1


async def test_a_compact_that_must_move_leaves_the_bound_items_out(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    while True:
        first = await sdk.responses.create(model="gpt-test", input="hello")
        if bound.accounts()[-1] == "main":
            break
    bound.behaviour.fail_keys[UPSTREAM_KEY] = 500  # main fails: the compaction must move
    raw = await sdk.responses.with_raw_response.compact(
        model="gpt-test", previous_response_id=first.id
    )
    compact = compacts(bound)[-1]
    assert account_of(compact) != "main"
    assert '"type":"reasoning"' not in compact.body.decode().replace(" ", "")
    assert tag(UPSTREAM_KEY) not in compact.body.decode()
    assert raw.headers["x-gateway-affinity"] == "switched"


async def test_a_compacted_window_with_one_prompt_cache_key_stays_on_one_account(
    sdk: openai.AsyncOpenAI, bound: BoundUpstream
) -> None:
    """The documented flow: compact a chain, then send its output as the next input (no
    previous_response_id: nothing ties it to the chain but the cache key). One
    `prompt_cache_key` throughout keeps every step on one account."""
    served: set[str] = set()
    for n in range(6):
        cache_key = f"agent-{n}"
        first = await sdk.responses.create(
            model="gpt-test", input="hello", prompt_cache_key=cache_key
        )
        compacted = await sdk.responses.compact(
            model="gpt-test", previous_response_id=first.id, prompt_cache_key=cache_key
        )
        window: list[Any] = [
            i.model_dump(mode="json", exclude_none=True, warnings=False) for i in compacted.output
        ]
        await sdk.responses.create(
            model="gpt-test",
            input=[*window, {"role": "user", "content": "go on"}],
            prompt_cache_key=cache_key,
        )
        accounts = {account_of(r) for r in bound.requests[-3:]}
        assert len(accounts) == 1, n
        served |= accounts
    assert bound.refused == 0
    assert len(served) > 1  # the keys spread over the accounts
