"""A stored response says `store: true` in every form the client gets it: the lifecycle events
of its stream, its JSON answer, and retrieve, although the upstream was asked to keep nothing."""

from __future__ import annotations

import copy
from typing import Any

import openai
import orjson
from openai.types.responses import Response
from pytest_aiohttp import AiohttpServer

from gateway.mockgen import build_response
from gateway.mockupstream import create_mock_upstream
from gateway.streaming.sse import SSEParser, encode_event
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
LIFECYCLE = ("response.created", "response.in_progress", "response.completed")


def stored(response: Response) -> object:
    """`store`, which the SDK's Response type keeps as an extra field."""
    return response.model_dump().get("store")


async def lifecycle_of(sdk: openai.AsyncOpenAI, **create: Any) -> tuple[list[Any], list[Any]]:
    stream = await sdk.responses.create(stream=True, **create)
    events = [event async for event in stream]
    return events, [e for e in events if e.type in LIFECYCLE]


async def test_streamed_stored_response_says_store_true_in_its_events(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    events, lifecycle = await lifecycle_of(sdk, model="gpt-test", input="Tell me a story")
    assert orjson.loads(stub.last.body)["store"] is False  # the upstream keeps nothing
    assert [e.type for e in lifecycle] == list(LIFECYCLE)
    assert all(e.response.store is True for e in lifecycle)
    kept = await sdk.responses.retrieve(lifecycle[0].response.id)
    assert stored(kept) is True
    assert kept.model_dump() == lifecycle[-1].response.model_dump()
    # Every other event came as the upstream sent it.
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(d.delta for d in deltas) == kept.output_text


async def test_chained_stream_says_what_it_chained_on(sdk: openai.AsyncOpenAI) -> None:
    first = await sdk.responses.create(model="gpt-test", input="one")
    _, lifecycle = await lifecycle_of(
        sdk, model="gpt-test", input="two", previous_response_id=first.id
    )
    assert all(e.response.previous_response_id == first.id for e in lifecycle)
    assert all(e.response.store is True for e in lifecycle)


async def test_unstored_stream_passes_through_byte_for_byte(
    gateway: Any, stub: StubUpstream
) -> None:
    events = build_response({"input": "x", "store": False}, model="gpt-test").events()
    raw = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in events)
    stub.behaviour = Behaviour(raw_stream=raw)
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "x", "stream": True, "store": False},
        headers=AUTH,
    )
    assert await resp.read() == raw


async def test_stored_stream_with_crlf_framing_is_restated_too(
    gateway: Any, stub: StubUpstream
) -> None:
    events = build_response({"input": "x", "store": False}, model="gpt-test").events()
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    stub.behaviour = Behaviour(raw_stream=raw)
    resp = await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "x", "stream": True}, headers=AUTH
    )
    got = [orjson.loads(e.data) for e in SSEParser().feed(await resp.read())]
    assert [e["type"] for e in got] == [e["type"] for e in events]
    for sent, came in zip(events, got, strict=True):
        if sent["type"] in LIFECYCLE:
            assert came["response"]["store"] is True
        else:
            assert came == sent


async def test_json_answer_of_a_stored_response_says_store_true(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    answered = await sdk.responses.create(model="gpt-test", input="hi")
    assert orjson.loads(stub.last.body)["store"] is False
    assert stored(answered) is True
    assert stored(await sdk.responses.retrieve(answered.id)) is True


async def test_translated_chat_stream_says_store_true(
    aiohttp_server: AiohttpServer, make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    upstream = await aiohttp_server(create_mock_upstream())
    cfg = copy.deepcopy(config)
    cfg["providers"].append(
        {
            "name": "chat",
            "api": "chat_completions",
            "base_url": str(upstream.make_url("/v1")),
            "accounts": [{"name": "main", "api_key_env": "UP_KEY"}],
        }
    )
    cfg["models"].append({"name": "chat-model", "targets": [{"provider": "chat", "model": "m"}]})
    gateway = await make_gateway(cfg)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        first = await sdk.responses.create(model="chat-model", input="one")
        assert stored(first) is True
        _, lifecycle = await lifecycle_of(
            sdk, model="chat-model", input="two", previous_response_id=first.id
        )
        assert [e.type for e in lifecycle] == list(LIFECYCLE)
        assert all(e.response.store is True for e in lifecycle)
        assert all(e.response.previous_response_id == first.id for e in lifecycle)
        kept = await sdk.responses.retrieve(lifecycle[0].response.id)
        assert kept.model_dump() == lifecycle[-1].response.model_dump()
