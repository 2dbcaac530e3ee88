"""A relayed stream costs the client's connection as few writes as its timing allows: the head
goes out with the first events, and the last events with the end of the body."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app
from gateway.mockgen import build_response
from gateway.streaming.sse import encode_event
from tests.support.configs import KEY_A, base_config, settings_from
from tests.support.streamperf_writes import WriteRecorder
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
STREAM = {"model": "gpt-test", "input": "Tell me a story", "stream": True}
END = b"0\r\n\r\n"  # the chunked body's end


def events() -> list[dict[str, Any]]:
    return build_response({"input": "Tell me a story"}, model="gpt-test").events()


async def gateway_with(
    aiohttp_client: AiohttpClient, config: dict[str, Any], recorder: WriteRecorder
) -> Any:
    app = create_app(settings_from(config))
    app.on_response_prepare.append(recorder)
    return await aiohttp_client(app)


async def test_a_stream_that_came_whole_goes_out_in_one_write(
    aiohttp_client: AiohttpClient, config: dict[str, Any], stub: StubUpstream
) -> None:
    raw = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in events())
    stub.behaviour = Behaviour(raw_stream=raw)
    recorder = WriteRecorder()
    client = await gateway_with(aiohttp_client, config, recorder)
    resp = await client.post("/v1/responses", json=STREAM, headers=AUTH)
    assert resp.status == 200
    assert await resp.read() == raw
    assert len(recorder.writes) == 1
    (write,) = recorder.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw in write
    assert write.endswith(END)


async def test_head_rides_with_the_first_events_and_the_end_with_the_last(
    aiohttp_client: AiohttpClient, config: dict[str, Any], stub: StubUpstream
) -> None:
    sent = events()
    stub.behaviour = Behaviour(events=sent, between_s=0.01)  # each event read on its own
    recorder = WriteRecorder()
    client = await gateway_with(aiohttp_client, config, recorder)
    resp = await client.post("/v1/responses", json=STREAM, headers=AUTH)
    body = await resp.read()
    assert body == b"".join(encode_event(orjson.dumps(e), e["type"]) for e in sent)
    first, last = recorder.writes[0], recorder.writes[-1]
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (
        b"\r\n\r\n" + b"%x\r\n" % len(encode_event(orjson.dumps(sent[0]), sent[0]["type"])) in first
    )
    assert b"event: response.created\n" in first
    assert b"event: response.completed\n" in last
    assert last.endswith(END)
    assert len(recorder.writes) == len(sent)  # one per event: the head and the end cost none


async def test_the_head_goes_out_with_a_first_chunk_that_holds_no_whole_event(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> None:
    sent = events()
    raw = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in sent)
    go_on = asyncio.Event()

    async def upstream(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(raw[:20])  # half of the first event
        await go_on.wait()
        await resp.write(raw[20:])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/responses", upstream)
    server = await aiohttp_server(app)
    recorder = WriteRecorder()
    client = await gateway_with(
        aiohttp_client, base_config(str(server.make_url("")).rstrip("/")), recorder
    )
    # The client has the status and headers while the upstream still holds the first event.
    resp = await asyncio.wait_for(client.post("/v1/responses", json=STREAM, headers=AUTH), 5)
    assert resp.status == 200
    assert recorder.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert recorder.writes[0].endswith(b"\r\n\r\n")
    go_on.set()
    assert await resp.read() == raw
