"""POST /responses with stream: true: byte-for-byte relay and failures that never look clean."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from gateway.mockgen import build_response
from gateway.streaming.sse import SSEParser, encode_event
from tests.support.configs import KEY_A
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
Client = TestClient[Any, Any]
STREAM = {"model": "gpt-test", "input": "Tell me a story", "stream": True}


def canned_events() -> list[dict[str, Any]]:
    return build_response({"input": "Tell me a story"}, model="gpt-test").events()


async def events_of(resp: Any) -> list[dict[str, Any]]:
    parser = SSEParser()
    events = parser.feed(await resp.read())
    assert parser.at_boundary
    return [orjson.loads(e.data) for e in events]


async def test_stream_bytes_are_the_upstreams(gateway: Client, stub: StubUpstream) -> None:
    events = canned_events()
    raw = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in events)
    stub.behaviour = Behaviour(raw_stream=raw)
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"]
    assert await resp.read() == raw


async def test_stream_with_odd_framing_is_relayed_untouched(
    gateway: Client, stub: StubUpstream
) -> None:
    events = canned_events()
    raw = b": hello\r\n\r\n" + b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
    stub.behaviour = Behaviour(raw_stream=raw)
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert await resp.read() == raw


async def test_cut_after_created_ends_with_response_failed(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(cut_after=4)
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    events = await events_of(resp)
    assert [e["sequence_number"] for e in events] == list(range(5))
    last = events[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["id"] == events[0]["response"]["id"]
    assert last["response"]["error"]["code"] == "upstream_error"
    assert last["response"]["error"]["message"]


async def test_stream_that_ends_without_terminal_event_fails(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(events=canned_events()[:-1])
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    events = await events_of(resp)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["sequence_number"] == events[-2]["sequence_number"] + 1


async def test_upstream_response_failed_passes_through(gateway: Client, stub: StubUpstream) -> None:
    events = canned_events()[:3]
    failed = {
        "type": "response.failed",
        "sequence_number": 3,
        "response": {
            **events[0]["response"],
            "status": "failed",
            "error": {"code": "server_error", "message": "model crashed"},
        },
    }
    stub.behaviour = Behaviour(events=[*events, failed])
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    got = await events_of(resp)
    assert got[-1] == failed
    assert len(got) == 4


async def test_partial_frame_then_cut_is_an_error_event(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(raw_stream=b'event: response.created\ndata: {"type": "resp')
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    raw = await resp.read()
    assert raw.startswith(b"event: error\n")
    payload = orjson.loads(raw.split(b"data: ", 1)[1])
    assert payload["error"]["code"] == "upstream_error"
    assert payload["code"] == "upstream_error"
    assert payload["message"] == payload["error"]["message"]


async def test_stream_with_no_bytes_at_all_is_a_plain_502(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(raw_stream=b"")
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_error"


async def test_idle_upstream_mid_stream_ends_with_timeout(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["providers"][0]["timeout_s"] = 0.3
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(stall_after=3)
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    events = await events_of(resp)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_timeout"


async def test_client_leaving_closes_the_upstream_request(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(stall_after=3)
    resp = await gateway.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await asyncio.wait_for(stub.cancelled.wait(), timeout=1.0)


async def test_mock_provider_streams_in_canonical_order(gateway: Client) -> None:
    resp = await gateway.post("/v1/responses", json={**STREAM, "model": "mock-model"}, headers=AUTH)
    events = await events_of(resp)
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
