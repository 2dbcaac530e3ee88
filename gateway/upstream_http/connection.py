"""One keep-alive HTTP/1.1 connection: an asyncio.Protocol with httptools parsing answers.

A connection carries one exchange at a time. The answer's body is buffered as it arrives;
while a stream's consumer lags more than HIGH_WATER bytes behind, reading from the socket
pauses (so the upstream's writes block in its kernel, not in our memory) and resumes once the
consumer has taken what was buffered.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Callable
from typing import cast

import httptools

from gateway.upstream_http.errors import (
    DisconnectedError,
    ProtocolError,
    ReadTimeout,
    UpstreamHTTPError,
)

# Bytes of an unread streamed body past which reading from the socket pauses.
HIGH_WATER = 256 * 1024
# Encodings the client undoes (it asks for identity; an upstream may compress regardless).
_DECODED = (b"gzip", b"x-gzip", b"deflate")


class Connection(asyncio.Protocol):
    """A socket to one origin and the state of the exchange on it."""

    __slots__ = (
        "buffered",
        "busy",
        "chunks",
        "complete",
        "decoder",
        "exc",
        "headers_done",
        "idle_since",
        "keep_alive",
        "last_read",
        "loop",
        "lost",
        "on_lost",
        "parser",
        "paused",
        "raw_headers",
        "read_timeout",
        "sock",
        "status",
        "streaming",
        "timer",
        "transport",
        "until_eof",
        "waiter",
    )

    def __init__(self, on_lost: Callable[[Connection], None], read_timeout: float | None) -> None:
        self.on_lost = on_lost  # told when the connection is gone, so its pool forgets it
        self.loop = asyncio.get_running_loop()
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None  # the socket itself, to look at it while idle
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.last_read = 0.0
        self._reset()

    def _reset(self) -> None:
        self.busy = False  # an exchange is under way
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = True  # no length and not chunked: the body ends with the connection
        self.streaming = False
        self.paused = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.exc: UpstreamHTTPError | None = None
        self.decoder: zlib._Decompress | None = None

    # -- the exchange --------------------------------------------------------------------

    def send(self, head: bytes, body: bytes) -> bool:
        """Start an exchange; False (and nothing written) when the connection is already
        closed, so that the request may go on another."""
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return False
        self._reset()
        self.busy = True
        if len(body) < 16384:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        return True

    async def wait_headers(self) -> None:
        while not self.headers_done:
            await self._wait()

    async def read_all(self) -> bytes:
        while not self.complete:
            await self._wait()
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks, self.buffered = [], 0
        return body

    async def next_chunk(self) -> bytes:
        """What has arrived of the body since the last call (waiting for some); b"" at its end.
        Bytes that arrived before a failure are handed out before the failure is raised."""
        self.streaming = True
        while not self.chunks:
            if self.complete:
                return b""
            await self._wait()
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks, self.buffered = [], 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """Whether the finished exchange left the connection fit for another."""
        # A connection whose reading is still paused (its consumer stopped while behind) would
        # read nothing for the next exchange: it is closed, not pooled.
        return (
            self.complete
            and self.keep_alive
            and not self.lost
            and not self.paused
            and self.exc is None
        )

    async def _wait(self) -> None:
        if self.exc is not None:
            raise self.exc
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        timeout = self.read_timeout
        if timeout is not None:
            self.last_read = loop.time()
            if self.timer is None:
                self.timer = loop.call_at(self.last_read + timeout, self._on_timer)
        try:
            await waiter
        finally:
            self.waiter = None
        if self.exc is not None:
            raise self.exc

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:
        # One timer per wait period, re-armed lazily: reads push the deadline out without
        # touching the timer. Time with nobody waiting (a slow consumer) does not count.
        self.timer = None
        if self.waiter is None or self.read_timeout is None:
            return
        deadline = self.last_read + self.read_timeout
        if self.loop.time() < deadline:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            return
        self.fail(ReadTimeout(f"no data from the upstream in {self.read_timeout:g} s"))

    def fail(self, exc: UpstreamHTTPError) -> None:
        """End the exchange with exc and drop the connection."""
        if self.exc is None:
            self.exc = exc
        self.close()
        self._wake()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(ProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self.fail(ProtocolError(f"invalid HTTP answer: {exc}"))
        # One wake for all a read brought (headers, many chunks, the end); the waiting side
        # looks at what is there and waits again when it is not yet enough.
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        if self.busy and not self.complete:
            if self.headers_done and self.until_eof:
                self._finish()
            else:
                self.fail(DisconnectedError("the upstream closed the connection"))
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.busy and not self.complete:
            self.fail(DisconnectedError(f"the connection was lost: {exc!r}"))
        self.on_lost(self)

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request
            self.keep_alive = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer: the real one follows
            self.raw_headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"content-length" or lower == b"transfer-encoding":
                self.until_eof = False
            elif lower == b"content-encoding" and value.strip().lower() in _DECODED:
                self.decoder = zlib.decompressobj(wbits=47)  # gzip or zlib framing
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.decoder is not None:
            try:
                body = self.decoder.decompress(body)
            except zlib.error as exc:
                self.fail(ProtocolError(f"undecodable body: {exc}"))
                return
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.streaming and not self.paused:
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim answer
            return
        self._finish()

    def _finish(self) -> None:
        if self.decoder is not None:
            rest = self.decoder.flush()
            if rest:
                self.chunks.append(rest)
                self.buffered += len(rest)
        self.complete = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake()
