"""WebSocket mode meets the other features, through the official SDK's
`client.responses.connect()`: the newest create parameters reach the upstream as sent, the
guardrails redact and block on the socket, and a chain on the socket stays on one account."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app
from tests.conftest import MakeGateway
from tests.support.affinity_upstream import (
    AFFINITY_ENV,
    BoundUpstream,
    affinity_config,
)
from tests.support.configs import UPSTREAM_KEY, settings_from
from tests.support.guardrails_events import split_events
from tests.support.integrate_ws import connect, next_event
from tests.support.new_params import NEW_PARAMS as CREATE_PARAMS, SERVICE_TIERS
from tests.support.stub import Behaviour, StubUpstream
from tests.support.ws_sdk import TERMINAL, Turn, next_turn

Client = TestClient[Any, Any]
NEW_PARAMS: dict[str, Any] = {
    **CREATE_PARAMS,
    "stream_options": {"include_obfuscation": False},
}
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"


def sent(stub: StubUpstream) -> dict[str, Any]:
    assert stub.last.path == "/v1/responses"
    body: dict[str, Any] = stub.last.json
    return body


# The newest parameters -------------------------------------------------------------------


async def test_new_params_and_every_service_tier_reach_the_upstream_over_a_socket(
    gateway: Client, stub: StubUpstream
) -> None:
    async with connect(gateway) as socket:
        for tier in SERVICE_TIERS:
            await socket.response.create(
                model="gpt-test", input="hi", store=False, service_tier=tier, **NEW_PARAMS
            )
            turn = await next_turn(socket)
            assert turn.types[-1] == "response.completed"
            upstream = sent(stub)
            assert upstream["service_tier"] == tier
            for name, value in NEW_PARAMS.items():
                assert upstream[name] == value, name
            assert upstream["stream"] is True
            assert "type" not in upstream


async def test_new_params_survive_a_chained_turn_on_a_socket(
    gateway: Client, stub: StubUpstream
) -> None:
    """A chained `store: false` turn is rewritten (its context put into `input`): the new
    fields go with it unchanged."""
    async with connect(gateway) as socket:
        await socket.response.create(model="gpt-test", input="hi", store=False)
        first = await next_turn(socket)
        await socket.response.create(
            model="gpt-test",
            input="again",
            previous_response_id=first.response.id,
            store=False,
            service_tier="flex",
            **NEW_PARAMS,
        )
        await next_turn(socket)
    upstream = sent(stub)
    assert "previous_response_id" not in upstream
    assert upstream["service_tier"] == "flex"
    for name, value in NEW_PARAMS.items():
        assert upstream[name] == value, name


# Guardrails -----------------------------------------------------------------------------

RULES: list[dict[str, Any]] = [
    {"name": "pii", "detect": ["email"]},
    {"name": "cards", "detect": ["credit_card"], "action": "block"},
]


@pytest.fixture
async def guarded(make_gateway: MakeGateway, config: dict[str, Any]) -> Client:
    config["guardrails"] = RULES
    return await make_gateway(config)


async def test_socket_input_is_redacted_before_the_upstream_reads_it(
    guarded: Client, stub: StubUpstream
) -> None:
    async with connect(guarded) as socket:
        await socket.response.create(
            model="gpt-test",
            instructions=f"Answer {EMAIL}.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": f"to {EMAIL}"}]}],
        )
        first = await next_turn(socket)
        await socket.response.create(
            model="gpt-test", input="and again", previous_response_id=first.response.id
        )
        await next_turn(socket)
    for request in stub.requests:
        assert EMAIL not in request.body.decode()
    assert "to [REDACTED:email]" in stub.last.body.decode()


async def test_a_socket_remembers_the_redacted_input(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    """A `store: false` turn is remembered by the connection as the upstream read it: a later
    turn of its chain with a model no rule covers does not send the matched text upstream."""
    config["guardrails"] = [{"name": "pii", "detect": ["email"], "models": ["gpt-test"]}]
    gateway = await make_gateway(config)
    async with connect(gateway) as socket:
        await socket.response.create(model="gpt-test", input=f"to {EMAIL}", store=False)
        first = await next_turn(socket)
        await socket.response.create(
            model="cheap", input="again", previous_response_id=first.response.id, store=False
        )
        await next_turn(socket)
    assert stub.last.json["model"] == "gpt-cheap-upstream"
    for request in stub.requests:
        assert EMAIL not in request.body.decode()
    assert "to [REDACTED:email]" in stub.last.body.decode()


async def test_a_blocked_create_is_an_error_event_and_the_socket_stays_open(
    guarded: Client, stub: StubUpstream
) -> None:
    async with connect(guarded) as socket:
        await socket.response.create(model="gpt-test", input=f"pay with {CARD}")
        error = await next_event(socket)
        assert error.type == "error"
        detail = error.error
        assert (detail.code, detail.param, error.status) == ("content_blocked", "input", 400)
        assert "cards" in detail.message
        assert error.model_dump()["error"]["headers"] == {"x-gateway-guardrails": "cards"}
        assert CARD not in error.model_dump_json()
        assert stub.requests == []
        # The next create on the same socket is served.
        await socket.response.create(model="gpt-test", input="hello")
        turn = await next_turn(socket)
        assert turn.types[-1] == "response.completed"


TEXT = f"Write to {EMAIL} today, then to {EMAIL} again."


@pytest.mark.parametrize("cuts", [[12], [3, 9, 14, 20, 25], list(range(0, len(TEXT), 2))])
async def test_output_split_across_deltas_is_redacted_in_the_frames(
    guarded: Client, stub: StubUpstream, cuts: list[int]
) -> None:
    stub.behaviour = Behaviour(events=split_events(TEXT, cuts))
    async with connect(guarded) as socket:
        await socket.response.create(model="gpt-test", input="x", store=False)
        turn = await next_turn(socket)
    text = "".join(e.delta for e in turn.events if e.type == "response.output_text.delta")
    assert text == "Write to [REDACTED:email] today, then to [REDACTED:email] again."
    assert turn.response.output_text == text
    assert turn.sequence == list(range(len(turn.events)))
    assert EMAIL not in str([e.model_dump_json() for e in turn.events])


async def test_a_blocked_answer_ends_incomplete_on_the_socket(
    guarded: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(events=split_events(f"Your card is {CARD}.", [5, 16]))
    async with connect(guarded) as socket:
        await socket.response.create(model="gpt-test", input="x")
        turn = await next_turn(socket)
        assert turn.types[-1] == "response.incomplete"
        assert turn.response.incomplete_details is not None
        assert turn.response.incomplete_details.reason == "content_filter"
        assert CARD not in str([e.model_dump_json() for e in turn.events])
        stub.behaviour = Behaviour()
        await socket.response.create(model="gpt-test", input="hello")
        assert (await next_turn(socket)).types[-1] == "response.completed"


# Affinity -------------------------------------------------------------------------------


@pytest.fixture
async def bound(aiohttp_server: AiohttpServer) -> BoundUpstream:
    upstream = BoundUpstream()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


@pytest.fixture
async def over_accounts(aiohttp_client: AiohttpClient, bound: BoundUpstream) -> Client:
    config = affinity_config(bound.url)
    config["providers"][0]["cooldown_s"] = 30
    return await aiohttp_client(create_app(settings_from(config, AFFINITY_ENV)))


async def chain(socket: Any, turns: int, store: bool) -> list[Turn]:
    """`turns` creates, each chained on the last (no cache key, instructions or tools: only
    the chain ties them to an account)."""
    done: list[Turn] = []
    previous: str | None = None
    for n in range(turns):
        extra = {} if previous is None else {"previous_response_id": previous}
        await socket.response.create(model="gpt-test", input=f"turn {n}", store=store, **extra)
        turn = Turn()
        async for event in socket:
            assert event.type != "error", event
            turn.events.append(event)
            if event.type in TERMINAL:
                break
        done.append(turn)
        previous = turn.response.id
    return done


@pytest.mark.parametrize("store", [False, True])
async def test_a_socket_chain_stays_on_one_account(
    over_accounts: Client, bound: BoundUpstream, store: bool
) -> None:
    for _ in range(4):  # four chains: over three accounts by weight, they start on several
        async with connect(over_accounts) as socket:
            before = len(bound.accounts())
            await chain(socket, 5, store)
        accounts = bound.accounts()[before:]
        assert len(accounts) == 5
        assert len(set(accounts)) == 1, accounts
    assert bound.refused == 0


async def test_a_socket_chain_that_must_move_counts_as_switched(
    over_accounts: Client, bound: BoundUpstream
) -> None:
    async with connect(over_accounts) as socket:
        while True:
            (first,) = await chain(socket, 1, store=False)
            if bound.accounts()[-1] == "main":
                break
        bound.behaviour.fail_keys[UPSTREAM_KEY] = 500
        before = await switches(over_accounts)
        await socket.response.create(
            model="gpt-test", input="next", store=False, previous_response_id=first.response.id
        )
        turn = await next_turn(socket)
    assert turn.types[-1] == "response.completed"
    assert bound.accounts()[-1] != "main"
    assert bound.refused == 0  # the first account's reasoning was left out
    assert await switches(over_accounts) == before + 1


async def switches(gateway: Client) -> float:
    for line in (await (await gateway.get("/metrics")).text()).splitlines():
        if line.startswith('gateway_affinity_total{outcome="switched"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
