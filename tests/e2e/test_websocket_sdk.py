"""WebSocket mode through the official SDK's `client.responses.connect()`: an agent loop with
a function call, chained by previous_response_id, on a Responses and a Chat upstream."""

from __future__ import annotations

import asyncio
import copy
import signal
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from openai.types.responses import FunctionToolParam, Response
from openai.types.websocket_reconnection import ReconnectingEvent, ReconnectingOverrides
from pytest_aiohttp import AiohttpServer

from gateway.mockupstream import create_mock_upstream
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.processes import Replica
from tests.support.stub import StubUpstream
from tests.support.ws_sdk import Turn, next_turn

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "strict": True,
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
TEN_WORDS = "one two three four five six seven eight nine ten"


@pytest.fixture
async def chat_gateway(
    aiohttp_server: AiohttpServer, make_gateway: MakeGateway, config: dict[str, Any]
) -> TestClient[Any, Any]:
    upstream = await aiohttp_server(create_mock_upstream())
    cfg = copy.deepcopy(config)
    cfg["providers"].append(
        {
            "name": "chat",
            "api": "chat_completions",
            "base_url": str(upstream.make_url("/v1")),
            "accounts": [{"name": "main", "api_key_env": "UP_KEY"}],
            "timeout_s": 5,
        }
    )
    cfg["models"].append({"name": "chat-model", "targets": [{"provider": "chat", "model": "m"}]})
    return await make_gateway(cfg)


async def agent_loop(gateway: TestClient[Any, Any], model: str, store: bool) -> list[Turn]:
    """Three turns on one socket: the model calls a tool, gets its output, then a follow-up."""
    async with (
        openai.AsyncOpenAI(
            base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
        ) as client,
        client.responses.connect() as socket,
    ):
        await socket.response.create(
            model=model,
            input="What is the weather in Paris? Use get_weather.",
            tools=[WEATHER],
            store=store,
        )
        first = await next_turn(socket)
        call = first.response.output[0]
        assert call.type == "function_call"
        await socket.response.create(
            model=model,
            previous_response_id=first.response.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER],
            store=store,
        )
        second = await next_turn(socket)
        await socket.response.create(
            model=model,
            previous_response_id=second.response.id,
            input="And tomorrow?",
            store=store,
        )
        third = await next_turn(socket)
    return [first, second, third]


def check_turns(turns: list[Turn]) -> None:
    first, second, third = turns
    assert first.response.output[0].type == "function_call"
    assert first.response.output[0].name == "get_weather"
    assert second.response.output_text == "Tool said: sunny"
    assert second.response.previous_response_id == first.response.id
    assert third.response.output_text == "Echo: And tomorrow?"
    assert third.response.previous_response_id == second.response.id
    for turn in turns:
        assert turn.types[0] == "response.created"
        assert turn.types[-1] == "response.completed"
        assert turn.sequence == list(range(len(turn.sequence)))


@pytest.mark.parametrize("store", [True, False], ids=["stored", "store-false"])
async def test_agent_loop_on_a_responses_upstream(
    gateway: TestClient[Any, Any], store: bool
) -> None:
    check_turns(await agent_loop(gateway, "gpt-test", store))


@pytest.mark.parametrize("store", [True, False], ids=["stored", "store-false"])
async def test_agent_loop_on_a_chat_upstream(
    chat_gateway: TestClient[Any, Any], store: bool
) -> None:
    check_turns(await agent_loop(chat_gateway, "chat-model", store))


async def test_unstored_chain_is_not_retrievable_afterwards(
    gateway: TestClient[Any, Any], sdk: openai.AsyncOpenAI
) -> None:
    turns = await agent_loop(gateway, "gpt-test", store=False)
    for turn in turns:
        assert turn.response.to_dict()["store"] is False
        with pytest.raises(openai.NotFoundError):
            await sdk.responses.retrieve(turn.response.id)


async def test_stored_chain_is_retrievable_afterwards(
    gateway: TestClient[Any, Any], sdk: openai.AsyncOpenAI
) -> None:
    turns = await agent_loop(gateway, "gpt-test", store=True)
    got: Response = await sdk.responses.retrieve(turns[2].response.id)
    assert got.output_text == "Echo: And tomorrow?"


@pytest.mark.parametrize(
    ("delay_ms", "grace_s", "ending"),
    [(60, 20, "response.completed"), (300, 0.5, "response.failed")],
    ids=["within-grace", "past-grace"],
)
async def test_sigterm_ends_the_response_then_closes_with_1001(
    config: dict[str, Any], tmp_path: Path, delay_ms: int, grace_s: float, ending: str
) -> None:
    """A `gateway serve` process told to stop: the response in flight ends (whole within the
    grace, else with response.failed), then the socket closes with 1001 (going away), which
    the SDK takes as its cue to reconnect."""
    config["providers"][1]["token_delay_ms"] = delay_ms
    config["server"].update(shutdown_delay_s=0.5, shutdown_grace_s=grace_s)
    replica = Replica(config, tmp_path, "ws-drained").start()
    close_codes: list[int] = []

    def on_reconnecting(event: ReconnectingEvent) -> ReconnectingOverrides:
        close_codes.append(event.close_code)
        return {"abort": True}  # this test has no other replica to go to

    try:
        async with (
            openai.AsyncOpenAI(base_url=f"{replica.url}/v1", api_key=KEY_A, max_retries=0) as c,
            c.responses.connect(on_reconnecting=on_reconnecting) as socket,
        ):
            await socket.response.create(model="mock-model", input=TEN_WORDS)
            events: list[Any] = []
            async for event in socket:  # ends when the gateway closes the socket
                events.append(event)
                if event.type == "response.output_text.delta" and len(events) == 5:
                    replica.signal(signal.SIGTERM)
        assert events[0].type == "response.created"
        assert events[-1].type == ending
        assert [e.sequence_number for e in events] == list(range(len(events)))
        if ending == "response.completed":
            assert events[-1].response.output_text == f"Echo: {TEN_WORDS}"
        else:
            assert events[-1].response.error.code == "gateway_shutdown"
        assert close_codes == [1001]
        assert replica.proc is not None
        assert replica.proc.wait(timeout=30) == 0
    finally:
        replica.kill()


def sync_two_turns(base_url: str) -> list[str]:
    """The synchronous client, as a script would use it."""
    texts: list[str] = []
    with (
        openai.OpenAI(base_url=base_url, api_key=KEY_A, max_retries=0) as client,
        client.responses.connect() as socket,
    ):
        previous = None
        for text in ("first turn", "second turn"):
            socket.response.create(
                model="gpt-test",
                input=text,
                store=False,
                **({"previous_response_id": previous} if previous else {}),
            )
            for event in socket:
                if event.type == "error":
                    raise AssertionError(event)
                if event.type == "response.completed":
                    previous = event.response.id
                    texts.append(event.response.output_text)
                    break
    return texts


async def test_the_synchronous_client_chains_on_one_socket(
    gateway: TestClient[Any, Any], stub: StubUpstream
) -> None:
    texts = await asyncio.to_thread(sync_two_turns, str(gateway.make_url("/v1")))
    assert texts == ["Echo: first turn", "Echo: second turn"]
    sent = [m["content"][0]["text"] for m in stub.last.json["input"] if m.get("role") == "user"]
    assert sent == ["first turn", "second turn"]
