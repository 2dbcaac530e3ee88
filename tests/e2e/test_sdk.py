"""The official openai package against the gateway, the way its users write code."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.stub import Behaviour, StubUpstream


async def test_create_returns_text(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-test", input="Hello gateway")
    assert response.status == "completed"
    assert "Hello gateway" in response.output_text
    assert response.usage is not None
    assert response.usage.total_tokens > 0


async def test_raw_response_carries_gateway_headers(sdk: openai.AsyncOpenAI) -> None:
    raw = await sdk.responses.with_raw_response.create(model="gpt-test", input="hi")
    assert raw.headers["x-gateway-provider"] == "up"
    assert raw.request_id is not None
    assert raw.request_id.startswith("req_")


async def test_stream_helper_gets_the_final_response(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="gpt-test", input="Stream me please") as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.status == "completed"


async def test_stream_helper_with_a_function_call(sdk: openai.AsyncOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "strict": True,
            "parameters": {
                "type": "object",
                "title": "Args",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        }
    ]
    async with sdk.responses.stream(
        model="mock-model", input="What is the weather?", tools=tools, tool_choice="required"
    ) as stream:
        final = await stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call"
    assert "city" in json.loads(call.arguments)


async def test_sdk_sees_typed_errors(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.responses.create(model="no-such-model", input="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.responses.create(model="gpt-test", input="x", temperature=5)
    assert bad.value.param == "temperature"


async def test_wrong_key_is_an_authentication_error(
    gateway: object, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.AuthenticationError):
        await sdk.with_options(api_key="sk-not-a-real-key-000").responses.create(
            model="gpt-test", input="x"
        )


async def test_failed_stream_reaches_the_sdk_as_failed(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(cut_after=5)
    stream = await sdk.responses.create(model="gpt-test", input="x", stream=True)
    types = [event.type async for event in stream]
    assert types[-1] == "response.failed"


async def test_upstream_outage_is_an_internal_server_error(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(status=500, body=b"down")
    with pytest.raises(openai.InternalServerError) as err:
        await sdk.responses.create(model="gpt-test", input="x")
    assert err.value.status_code == 502
