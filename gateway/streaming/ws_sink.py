"""A relayed stream as WebSocket messages: each SSE event's data as one JSON text frame."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import WSMsgType, web

from gateway.errors import GatewayError
from gateway.streaming.sse import SSEParser


class WebSocketSink:
    """One response's events onto an open socket (the relay's Sink).

    The relay hands over whole SSE frames only, so each event's data goes out as it came,
    unparsed; with a `stream_id` (the client's lane) it is spliced into every event.
    """

    __slots__ = ("_parser", "_prefix", "socket", "started")

    def __init__(self, socket: web.WebSocketResponse, stream_id: str | None = None) -> None:
        self.socket = socket
        self._parser = SSEParser()
        self._prefix = b"" if stream_id is None else b'"stream_id":' + orjson.dumps(stream_id)
        self.started = False  # an event went out: the answer is the stream's

    async def prepare(self, request: web.Request, /) -> object:
        return None

    async def write(self, data: bytes, /) -> None:
        for event in self._parser.feed(data):
            await self.send(event.data)

    async def write_eof(self, data: bytes = b"", /) -> None:
        if data:
            await self.write(data)

    async def send(self, data: bytes) -> None:
        socket = self.socket
        if socket.closed or socket.close_code is not None:
            raise ConnectionResetError("the client's socket is closed")
        if self._prefix and data.startswith(b"{"):
            data = b"{" + self._prefix + (b"," if data[1:2] != b"}" else b"") + data[1:]
        self.started = True
        await socket.send_frame(data, WSMsgType.TEXT)

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send(orjson.dumps(event))


def error_event(error: GatewayError) -> dict[str, Any]:
    """A refused create as the socket's `error` event: what its HTTP answer would have said
    (status, and the envelope's type, code, message and param)."""
    detail: dict[str, Any] = {
        "type": error.error_type,
        "code": error.code,
        "message": error.message,
        "param": error.param,
    }
    if error.headers:  # retry-after and the rate-limit headers of a 429
        detail["headers"] = dict(error.headers)
    # The code, message and param restated at the top, as a stream's error event has them.
    return {
        "type": "error",
        "status": error.status,
        "error": detail,
        "code": error.code,
        "message": error.message,
        "param": error.param,
    }
