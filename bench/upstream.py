"""A fixed-answer Responses API upstream for the benchmark: canned JSON, or a canned SSE stream."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import secrets
import signal
from collections.abc import Sequence
from typing import Any, Final, cast

import orjson
import uvloop
from aiohttp import web

RESPONSE_ID: Final = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
ITEM_ID: Final = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b"
TEXT: Final = (
    "The gateway forwards your request to the provider and relays its answer unchanged, "
    "adding only authentication, validation and usage accounting on the way."
)
# 22 deltas + 8 framing events = 30 events per stream, in the API's canonical order.
DELTAS: Final = 22


def _words(text: str, n: int) -> list[str]:
    """Split text into n roughly equal pieces, as a model's token deltas would be."""
    step = -(-len(text) // n)
    return [text[i : i + step] for i in range(0, len(text), step)]


def _response(
    status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": 256,
        "model": "gpt-4.1-mini-2025-04-14",
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _message(status: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": ITEM_ID,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}] if text else [],
    }


USAGE: Final = {
    "input_tokens": 61,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 31,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 92,
}
JSON_BODY: Final = orjson.dumps(_response("completed", [_message("completed", TEXT)], USAGE))


def _sse_events(deltas: Sequence[str]) -> list[bytes]:
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": ITEM_ID, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], None)},
        {"type": "response.in_progress", "response": _response("in_progress", [], None)},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _message("in_progress", ""),
        },
        {"type": "response.content_part.added", **where, "part": part},
        *(
            {"type": "response.output_text.delta", **where, "delta": d, "logprobs": []}
            for d in deltas
        ),
        {"type": "response.output_text.done", **where, "text": TEXT, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": TEXT}},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": _message("completed", TEXT),
        },
        {
            "type": "response.completed",
            "response": _response("completed", [_message("completed", TEXT)], USAGE),
        },
    ]
    return [
        b"event: "
        + e["type"].encode()
        + b"\ndata: "
        + orjson.dumps({**e, "sequence_number": n})
        + b"\n\n"
        for n, e in enumerate(events)
    ]


SSE_EVENTS: Final = _sse_events(_words(TEXT, DELTAS))
# The framing events before the first delta and after the last one.
HEAD_EVENTS: Final = 4
TAIL_EVENTS: Final = 4

# The raw server's answers, framed once: a JSON answer is one write; a stream is one write per
# event (headers ride with the first, the last chunk with the last), as a provider flushes tokens.
JSON_ANSWER: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(JSON_BODY)).encode()
    + b"\r\n\r\n"
    + JSON_BODY
)


def _chunked(events: Sequence[bytes]) -> tuple[bytes, ...]:
    chunks = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events]
    chunks[0] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks[0]
    )
    chunks[-1] += b"0\r\n\r\n"
    return tuple(chunks)


STREAM_WRITES: Final = _chunked(SSE_EVENTS)
NOT_FOUND: Final = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


# Every answer gets an id of its own, as a real upstream's do (a gateway storing responses
# would otherwise find each id already kept): this process's random half, then a counter.
_ID_HEX: Final = RESPONSE_ID.encode()[len(b"resp_") :]
_RUN: Final = secrets.token_hex(8).encode()
_SERIAL: Final = itertools.count()


def with_new_id(writes: Sequence[bytes]) -> list[bytes]:
    """`writes` with RESPONSE_ID replaced by a new id of the same length (chunk sizes hold)."""
    fresh = _RUN + b"%032x" % next(_SERIAL)
    return [w.replace(_ID_HEX, fresh) for w in writes]


def wants_stream(body: bytes) -> bool:
    return b'"stream":true' in body or b'"stream": true' in body


class RawUpstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive on a bare uvloop protocol: just enough for POST /v1/responses.

    aiohttp's StreamResponse costs ~10 us per written event, which on a shared core made the
    upstream, not the proxy under test, the limit of the streaming runs.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            found = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            size = int(found.group(1)) if found else 0
            if b"\r\ntransfer-encoding:" in head:
                self.answer([BAD_REQUEST])  # chunked requests: not needed by any client here
                return
            if len(self.buffer) < end + 4 + size:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + size])
            del self.buffer[: end + 4 + size]
            if not head.startswith(b"post /v1/responses "):
                self.answer([NOT_FOUND])
            elif wants_stream(body):
                self.stream()
            else:
                self.answer(with_new_id([JSON_ANSWER]))
            if b"\r\nconnection: close" in head and self.transport:
                self.transport.close()

    def stream(self) -> None:
        # The id rides in the first writes (created, in_progress) and the last (completed).
        first, second, last = with_new_id((*STREAM_WRITES[:2], STREAM_WRITES[-1]))
        self.answer((first, second, *STREAM_WRITES[2:-1], last))

    def answer(self, writes: Sequence[bytes]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in writes:
            self.transport.write(chunk)


class SlowUpstream(RawUpstream):
    """Streams as a slow model writes them: the framing events at once, then one delta every
    `interval` seconds until the last, or until `release()` ends every open stream at once."""

    def __init__(self, interval: float, writes: Sequence[bytes], open_streams: set[SlowUpstream]):
        super().__init__()
        self.interval = interval
        self.writes = writes
        self.open_streams = open_streams
        self.timer: asyncio.TimerHandle | None = None

    def stream(self) -> None:
        self.answer(self.writes[:HEAD_EVENTS])
        self.open_streams.add(self)
        self.next_delta(HEAD_EVENTS)

    def next_delta(self, at: int) -> None:
        if at == len(self.writes) - TAIL_EVENTS:
            self.end()
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.interval, self.send_delta, at)

    def send_delta(self, at: int) -> None:
        self.answer(self.writes[at : at + 1])
        self.next_delta(at + 1)

    def end(self) -> None:
        """The closing events now, whatever deltas were still to come."""
        self.stop()
        self.answer(self.writes[-TAIL_EVENTS:])

    def stop(self) -> None:
        self.open_streams.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop()


def slow_stream_writes(deltas: int) -> tuple[bytes, ...]:
    pieces = _words(TEXT, DELTAS)
    return _chunked(_sse_events([pieces[i % len(pieces)] for i in range(deltas)]))


async def serve_raw(host: str, port: int, interval: float = 0.0, deltas: int = DELTAS) -> None:
    """The raw server; with `interval`, streams of `deltas` deltas paced that far apart, and
    SIGUSR1 ends every stream open at that moment."""
    writes = slow_stream_writes(deltas)
    open_streams: set[SlowUpstream] = set()

    def protocol() -> RawUpstream:
        return SlowUpstream(interval, writes, open_streams) if interval > 0 else RawUpstream()

    def release() -> None:
        for stream in list(open_streams):
            stream.end()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, release)

    # A deep accept queue: a proxy opening thousands of streams at once connects in a burst.
    server = await asyncio.get_running_loop().create_server(protocol, host, port, backlog=65535)
    async with server:
        await server.serve_forever()


async def create_response(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if not wants_stream(body):
        return web.Response(body=with_new_id([JSON_BODY])[0], content_type="application/json")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        # One write per event, as a provider flushes each token: the proxy sees many small reads.
        first, second, last = with_new_id((*SSE_EVENTS[:2], SSE_EVENTS[-1]))
        for event in (first, second, *SSE_EVENTS[2:-1], last):
            await response.write(event)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the load generator closed its sockets at the end of a run
    return response


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/responses", create_response)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--server",
        choices=("raw", "aiohttp"),
        default="raw",
        help="raw: a bare uvloop protocol (cheapest); aiohttp: the same answers from aiohttp",
    )
    parser.add_argument(
        "--event-interval",
        type=float,
        default=0.0,
        help="raw server only: seconds between a stream's deltas (default: all at once)",
    )
    parser.add_argument(
        "--deltas",
        type=int,
        default=DELTAS,
        help="with --event-interval: deltas per stream at most (SIGUSR1 ends them all sooner)",
    )
    args = parser.parse_args()
    if args.server == "raw":
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_raw(args.host, args.port, args.event_interval, args.deltas))
        return
    serve(create_app(), args.host, args.port)


def serve(app: web.Application, host: str, port: int) -> None:
    """Serve `app` on uvloop without an access log or a banner (the bench's floor too)."""
    web.run_app(
        app, host=host, port=port, access_log=None, loop=uvloop.new_event_loop(), print=None
    )


if __name__ == "__main__":
    main()
