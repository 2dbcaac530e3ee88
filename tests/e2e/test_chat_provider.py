"""The chat_completions provider end to end: the official SDKs against the gateway, in front of
the mock upstream's /v1/chat/completions."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import agents
import openai
import orjson
import pytest
from aiohttp import web
from openai.types.responses import (
    FunctionToolParam,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseInProgressEvent,
)
from pytest_aiohttp import AiohttpServer

from gateway.mockupstream import create_mock_upstream
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, UPSTREAM_KEY

CHAT_MODEL = "chat-model"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEATHER_TOOL: FunctionToolParam = {
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
TEXT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


class Seen:
    """What the mock upstream was sent: chat.completions bodies and their headers."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    @web.middleware
    async def record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.bodies.append(orjson.loads(await request.read()))
        self.headers.append(dict(request.headers))
        return await handler(request)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def sdk(
    aiohttp_server: AiohttpServer, make_gateway: MakeGateway, config: dict[str, Any], seen: Seen
) -> AsyncIterator[openai.AsyncOpenAI]:
    upstream_app = create_mock_upstream()
    upstream_app.middlewares.append(seen.record)
    upstream = await aiohttp_server(upstream_app)
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
    cfg["models"].append(
        {"name": CHAT_MODEL, "targets": [{"provider": "chat", "model": "mock-model"}]}
    )
    gateway = await make_gateway(cfg)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


async def test_create_returns_translated_text(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model=CHAT_MODEL, input="Hello chat", metadata={"a": "b"})
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "Echo: Hello chat"
    assert response.output[0].type == "message"
    assert response.output[0].id.startswith("msg_")
    assert response.metadata == {"a": "b"}
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + 3


async def test_upstream_gets_a_chat_request_with_the_account_key(
    sdk: openai.AsyncOpenAI, seen: Seen
) -> None:
    await sdk.responses.create(
        model=CHAT_MODEL,
        input="Hi",
        instructions="Be brief.",
        max_output_tokens=64,
        metadata={"team": "a"},
    )
    assert seen.headers[-1]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.bodies[-1] == {
        "model": "mock-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 64,
        "store": False,  # the gateway keeps the response; the upstream keeps nothing
    }


async def test_stream_helper_gets_the_final_text(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(model=CHAT_MODEL, input="Stream me") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Echo: Stream me"
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.output_tokens == 3


async def test_stream_helper_gets_a_function_call(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(
        model=CHAT_MODEL, input="What is the weather?", tools=[WEATHER_TOOL], tool_choice="required"
    ) as stream:
        final = await stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert (call.id or "").startswith("fc_")
    assert call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "example"}


async def test_raw_stream_is_in_canonical_order(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model=CHAT_MODEL, input="One two", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == TEXT_ORDER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    lifecycle = [
        e
        for e in events
        if isinstance(e, ResponseCreatedEvent | ResponseInProgressEvent | ResponseCompletedEvent)
    ]
    assert len(lifecycle) == 3
    assert {e.response.id for e in lifecycle} == {lifecycle[0].response.id}


async def test_hosted_tool_is_a_bad_request(sdk: openai.AsyncOpenAI, seen: Seen) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.responses.create(model=CHAT_MODEL, input="Search", tools=[{"type": "web_search"}])
    assert err.value.param == "tools[0].type"
    assert err.value.code == "unsupported_value"
    assert seen.bodies == []


async def test_agent_runs_a_function_tool(sdk: openai.AsyncOpenAI) -> None:
    agents.set_tracing_disabled(True)

    @agents.function_tool
    def lookup_code(name: str) -> str:
        """The secret code of a person."""
        return "4217"

    agent = agents.Agent(
        name="helper",
        instructions="Use tools.",
        tools=[lookup_code],
        model=agents.OpenAIResponsesModel(model=CHAT_MODEL, openai_client=sdk),
    )
    result = await agents.Runner.run(agent, "Please call lookup_code for Ada.")
    assert result.final_output == "Tool said: 4217"


# -- failure paths, against a canned chat upstream ----------------------------


class Canned:
    """A chat upstream that answers every request with one fixed body."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "text/event-stream"
        self.later = b""  # sent once `gate` is set, when the client has seen the first part
        self.gate = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.answer)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if not self.later:
            return web.Response(status=self.status, body=self.body, content_type=self.content_type)
        response = web.StreamResponse(headers={"Content-Type": self.content_type})
        await response.prepare(request)
        await response.write(self.body)
        await self.gate.wait()
        await response.write(self.later)
        await response.write_eof()
        return response

    def chunks(self, *chunks: dict[str, Any], done: bool = True) -> None:
        frames = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
        self.body = b"".join(frames) + (b"data: [DONE]\n\n" if done else b"")


def text_chunk(text: str, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}],
    }


@pytest.fixture
def canned() -> Canned:
    return Canned()


@pytest.fixture
async def canned_sdk(
    aiohttp_server: AiohttpServer,
    make_gateway: MakeGateway,
    config: dict[str, Any],
    canned: Canned,
) -> AsyncIterator[openai.AsyncOpenAI]:
    upstream = await aiohttp_server(canned.app)
    cfg = copy.deepcopy(config)
    cfg["providers"].append(
        {
            "name": "canned",
            "api": "chat_completions",
            "base_url": str(upstream.make_url("/v1")),
            "timeout_s": 5,
        }
    )
    cfg["models"].append({"name": CHAT_MODEL, "targets": [{"provider": "canned", "model": "m"}]})
    gateway = await make_gateway(cfg)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


async def raw_events(client: openai.AsyncOpenAI) -> list[Any]:
    stream = await client.responses.create(model=CHAT_MODEL, input="x", stream=True)
    return [event async for event in stream]


async def test_upstream_client_error_passes_through(
    canned_sdk: openai.AsyncOpenAI, canned: Canned
) -> None:
    canned.status, canned.content_type = 400, "application/json"
    canned.body = orjson.dumps(
        {
            "error": {
                "message": "Bad temperature.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "invalid_value",
            }
        }
    )
    with pytest.raises(openai.BadRequestError) as err:
        await canned_sdk.responses.create(model=CHAT_MODEL, input="x")
    assert err.value.param == "temperature"


async def test_stream_cut_before_finish_ends_failed(
    canned_sdk: openai.AsyncOpenAI, canned: Canned
) -> None:
    canned.chunks(text_chunk("Hel"), text_chunk("lo"), done=False)
    events = await raw_events(canned_sdk)
    assert events[-1].type == "response.failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Hel", "lo"]


async def test_error_chunk_mid_stream_ends_failed_with_its_code(
    canned_sdk: openai.AsyncOpenAI, canned: Canned
) -> None:
    canned.chunks(text_chunk("Hi"), done=False)
    canned.later = (
        b"data: "
        + orjson.dumps({"error": {"message": "Overloaded", "code": "server_error"}})
        + b"\n\n"
    )
    stream = await canned_sdk.responses.create(model=CHAT_MODEL, input="x", stream=True)
    canned.gate.set()  # the 200 is out: what comes now is mid-stream
    events = [event async for event in stream]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error is not None
    assert (failed.response.error.code, failed.response.error.message) == (
        "server_error",
        "Overloaded",
    )


async def test_error_chunk_before_any_event_is_a_502(
    canned_sdk: openai.AsyncOpenAI, canned: Canned
) -> None:
    canned.chunks({"error": {"message": "Overloaded"}})
    with pytest.raises(openai.InternalServerError) as err:
        await raw_events(canned_sdk)
    assert err.value.status_code == 502
    assert "Overloaded" in err.value.message


async def test_json_answer_to_a_stream_request_is_replayed_as_events(
    canned_sdk: openai.AsyncOpenAI, canned: Canned
) -> None:
    canned.content_type = "application/json"
    canned.body = orjson.dumps(
        {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "One two three"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    events = await raw_events(canned_sdk)
    assert [e.type for e in events] == [*TEXT_ORDER[:5], *TEXT_ORDER[-4:]]
    assert events[4].delta == "One two three"


async def test_state_and_background_work_on_a_chat_upstream(sdk: openai.AsyncOpenAI) -> None:
    chat_client = sdk
    first = await chat_client.responses.create(model=CHAT_MODEL, input="first turn")
    second = await chat_client.responses.create(
        model=CHAT_MODEL, input="second turn", previous_response_id=first.id
    )
    assert (await chat_client.responses.retrieve(second.id)).output_text == second.output_text
    queued = await chat_client.responses.create(model=CHAT_MODEL, input="later", background=True)
    async with asyncio.timeout(10):
        while (done := await chat_client.responses.retrieve(queued.id)).status in (
            "queued",
            "in_progress",
        ):
            await asyncio.sleep(0.05)
    assert done.status == "completed"
    assert "later" in done.output_text
