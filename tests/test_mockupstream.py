"""The mock upstream, driven over loopback by the official OpenAI SDK."""

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletionToolParam
from openai.types.responses import FunctionToolParam
from pytest_aiohttp import AiohttpServer

from gateway.mockupstream import create_mock_upstream

WEATHER_PARAMETERS: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}
CHAT_WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS},
}
WEATHER_ARGS = {"city": "example", "days": 1}


@pytest.fixture
async def server(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(create_mock_upstream())


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    base_url = str(server.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
        yield client


async def test_responses_create_returns_text(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="mock-model", input="hello world")
    assert response.output_text == "Echo: hello world"
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + 3


async def test_responses_stream_gives_final_text(client: openai.AsyncOpenAI) -> None:
    deltas = []
    async with client.responses.stream(model="mock-model", input="stream me") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert final.output_text == "".join(deltas) == "Echo: stream me"


async def test_responses_stream_parses_function_call(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(
        model="mock-model", input="use get_weather", tools=[WEATHER_TOOL]
    ) as stream:
        final = await stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == WEATHER_ARGS
    assert call.parsed_arguments == WEATHER_ARGS


async def test_responses_stream_with_tool_output_answers_text(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(
        model="mock-model",
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Tool said: sunny"


async def test_chat_completion_returns_text(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_chat_completion_returns_tool_call(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "hi"}],
        tools=[CHAT_WEATHER_TOOL],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert json.loads(call.function.arguments) == WEATHER_ARGS


async def test_chat_stream_gives_text_and_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "hi there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async with stream:
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert (text, finish) == ("Echo: hi there", "stop")
    assert usage is not None
    assert usage.completion_tokens == 3


async def test_chat_stream_gives_tool_call(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "user", "content": "call get_weather"}],
        tools=[CHAT_WEATHER_TOOL],
        stream=True,
    )
    arguments, name, finish = "", None, None
    async with stream:
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    assert call.index == 0
                    if call.function is not None:
                        name = call.function.name or name
                        arguments += call.function.arguments or ""
                finish = choice.finish_reason or finish
    assert (name, finish) == ("get_weather", "tool_calls")
    assert json.loads(arguments) == WEATHER_ARGS


async def test_models_are_listed(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert models == ["mock-model"]


async def test_bad_json_is_400_envelope(server: TestServer) -> None:
    url = server.make_url("/v1/responses")
    async with ClientSession() as session, session.post(url, data=b"{nope") as resp:
        assert resp.status == 400
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"].keys() == {"message", "type", "param", "code"}
    assert body["error"]["param"] is None


async def test_missing_model_is_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", cast_to=object, body={"messages": []})
    assert caught.value.param == "model"


@pytest.mark.parametrize("path", ["/responses", "/v1/responses"])
async def test_stream_is_server_sent_events(server: TestServer, path: str) -> None:
    body: dict[str, Any] = {"model": "m", "input": "hi", "stream": True}
    async with ClientSession() as session, session.post(server.make_url(path), json=body) as resp:
        assert resp.content_type == "text/event-stream"
        raw = await resp.read()
    assert raw.startswith(b"event: response.created\ndata: {")
    assert raw.endswith(b"\n\n")


async def test_chat_stream_ends_with_done(server: TestServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    url = server.make_url("/chat/completions")
    async with ClientSession() as session, session.post(url, json=body) as resp:
        raw = await resp.read()
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_client_disconnect_mid_stream_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    # A plain runner, as `web.run_app` uses: TestServer cancels handlers on disconnect,
    # which would hide the write to the gone client that this test is about.
    runner = web.AppRunner(create_mock_upstream(token_delay_ms=1))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/responses"
    body = {"model": "m", "input": "a b c d e f g h i j", "stream": True}
    try:
        async with ClientSession() as session, session.post(url, json=body) as resp:
            await resp.content.readline()
    finally:
        await runner.cleanup()  # waits for the handler still writing to the gone client
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
