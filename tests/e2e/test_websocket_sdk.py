"""WebSocket mode through the official SDK's `client.responses.connect()`: an agent loop with
a function call, chained by previous_response_id, on a Responses and a Chat upstream."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from openai.types.responses import FunctionToolParam, Response
from pytest_aiohttp import AiohttpServer

from gateway.mockupstream import create_mock_upstream
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
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
