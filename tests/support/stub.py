"""A stub upstream: a real aiohttp server that records requests and fails on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.mockcompact import build_compaction
from gateway.mockgen import build_response
from gateway.streaming.sse import encode_event


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Behaviour:
    """What the next answers do. Defaults: a correct answer from the fake model."""

    status: int = 200
    body: bytes | None = None  # a fixed body (with `status`) instead of the fake model
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the answer's headers
    events: list[dict[str, Any]] | None = None  # a fixed event list for streams
    cut_after: int | None = None  # close the connection after this many events
    stall_after: int | None = None  # stop sending (but keep the connection) after this many
    between_s: float = 0.0  # between events
    raw_stream: bytes | None = None  # exact bytes to stream, then end
    fail_keys: dict[str, int] = field(default_factory=dict)  # upstream key -> status to answer


class StubUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.url = ""
        self.behaviour = Behaviour()
        self.cancelled = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/responses", self.responses)
        self.app.router.add_post("/v1/responses/input_tokens", self.input_tokens)
        self.app.router.add_post("/v1/responses/compact", self.compact)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    async def input_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), raw))
        return web.json_response({"object": "response.input_tokens", "input_tokens": 4242})

    async def compact(self, request: web.Request) -> web.Response:
        """POST /responses/compact as OpenAI answers it (a `response.compaction` object), or
        the fixed answer or failure `behaviour` asks for."""
        raw = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), raw))
        b = self.behaviour
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key in b.fail_keys:
            failed = {"error": {"message": "account failed", "type": "server_error"}}
            return web.json_response(failed, status=b.fail_keys[key])
        if b.body is not None:
            return web.Response(body=b.body, status=b.status, content_type=b.content_type)
        body = orjson.loads(raw)
        answer = build_compaction(body, body.get("model", "stub"))
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(Recorded(request.path, dict(request.headers), raw))
        b = self.behaviour
        try:
            if b.delay_s:
                await asyncio.sleep(b.delay_s)
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if key in b.fail_keys:
                error = {
                    "error": {
                        "message": "account failed",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
                return web.Response(
                    body=orjson.dumps(error),
                    status=b.fail_keys[key],
                    content_type="application/json",
                    headers=b.headers,
                )
            if b.body is not None:
                return web.Response(
                    body=b.body, status=b.status, content_type=b.content_type, headers=b.headers
                )
            body = orjson.loads(raw)
            run = build_response(body, model=body.get("model", "stub"))
            if not body.get("stream"):
                return web.Response(
                    body=orjson.dumps(run.response), content_type="application/json"
                )
            return await self._stream(request, b, run.events())
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def _stream(
        self, request: web.Request, b: Behaviour, events: list[dict[str, Any]]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if b.raw_stream is not None:
            await resp.write(b.raw_stream)
            await resp.write_eof()
            return resp
        for i, event in enumerate(b.events if b.events is not None else events):
            if b.cut_after is not None and i == b.cut_after:
                assert request.transport is not None
                request.transport.close()
                return resp
            if b.stall_after is not None and i == b.stall_after:
                await asyncio.sleep(3600)
            if b.between_s:
                await asyncio.sleep(b.between_s)
            await resp.write(encode_event(orjson.dumps(event), event["type"]))
        await resp.write_eof()
        return resp
