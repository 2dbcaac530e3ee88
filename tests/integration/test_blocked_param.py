"""A blocked chained turn names the field as the client sent it: an `input` sent as a string
is `input`, however the gateway expanded it with the chain's stored context."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.integrate_ws import connect, next_event
from tests.support.stub import StubUpstream
from tests.support.ws_sdk import next_turn

Client = TestClient[Any, Any]
CARD = "4111 1111 1111 1111"
RULES = [{"name": "cards", "apply_to": ["input"], "detect": ["credit_card"], "action": "block"}]


@pytest.fixture
async def guarded(make_gateway: MakeGateway, config: dict[str, Any]) -> Client:
    config["guardrails"] = RULES
    return await make_gateway(config)


@pytest.mark.parametrize(
    ("given", "param"),
    [
        (f"card {CARD}", "input"),
        ([{"role": "user", "content": f"card {CARD}"}], "input[0].content"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "input_text", "text": f"card {CARD}"}]},
            ],
            "input[1].content[0].text",
        ),
    ],
)
async def test_a_chained_post_names_the_field_as_sent(
    guarded: Client, stub: StubUpstream, given: Any, param: str
) -> None:
    async with openai.AsyncOpenAI(
        base_url=str(guarded.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        first = await sdk.responses.create(model="gpt-test", input="hello")
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.responses.create(model="gpt-test", input=given, previous_response_id=first.id)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("content_blocked", param)


async def test_a_chained_socket_create_names_the_field_as_sent(
    guarded: Client, stub: StubUpstream
) -> None:
    async with connect(guarded) as socket:
        await socket.response.create(model="gpt-test", input="hello", store=False)
        first = await next_turn(socket)
        await socket.response.create(
            model="gpt-test",
            input=f"card {CARD}",
            previous_response_id=first.response.id,
            store=False,
        )
        error = await next_event(socket)
    assert error.type == "error"
    assert (error.error.code, error.error.param) == ("content_blocked", "input")
