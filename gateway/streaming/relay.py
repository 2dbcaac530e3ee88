"""Pipe an upstream event stream to the client byte for byte, tapping only what it must."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway import metrics
from gateway.errors import GatewayError, ServiceUnavailableError, UpstreamError
from gateway.providers.base import UPSTREAM_ERRORS, upstream_failure
from gateway.streaming.drain import OpenStreams, StreamHandle
from gateway.streaming.sse import SSEEvent, SSEParser, event_type

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
SHUTTING_DOWN = ServiceUnavailableError(
    "The gateway replica serving this stream is shutting down; send the request again.",
    code="gateway_shutdown",
)
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# The events the tap keeps, by their `event:` line; a false alarm (the words in a delta's
# text) only costs parsing that one frame.
_NAMES = tuple(
    b"event: " + name.encode() for name in ("response.created", *sorted(TERMINAL), "error")
)


class StreamTap:
    """Watches the frames going by: holds back a partial frame, keeps the lifecycle events.

    Only the frames are split (bytes.find); the JSON of `response.created` and of the terminal
    event is decoded, no delta event ever is.
    """

    __slots__ = (
        "_held",
        "_last",
        "_last_chunk",
        "_parser",
        "created",
        "error_sent",
        "first_chunk_at",
        "first_write_at",
        "terminal",
    )

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._held = b""
        self._last = b""
        self._last_chunk: bytes | None = None
        self.created: bytes | None = None
        self.terminal: dict[str, Any] | None = None
        self.error_sent = False
        self.first_chunk_at: float | None = None
        self.first_write_at: float | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that may go to the client now: every complete frame, never half of one."""
        if (
            not self._held
            and chunk.startswith(b"event: ")
            and chunk.endswith(b"\n\n")
            and self._parser.at_boundary
        ):
            # Whole named, LF-framed frames (how OpenAI and vLLM stream): only the frames
            # named like a lifecycle or error event are parsed; deltas go out unlooked-at.
            self._last_chunk = chunk
            for marker in _NAMES:
                at = chunk.find(marker)
                while at >= 0:
                    before = chunk.rfind(b"\n\n", 0, at)
                    end = chunk.find(b"\n\n", at) + 2
                    for event in SSEParser().feed(chunk[0 if before < 0 else before + 2 : end]):
                        self._see(event)
                    at = chunk.find(marker, end)
            return chunk
        self._last_chunk = None
        for event in self._parser.feed(chunk):
            self._see(event)
            self._last = event.data
        data = self._held + chunk if self._held else chunk
        if self._parser.at_boundary:
            self._held = b""
            return data
        cut = _frame_end(data)
        self._held = data[cut:]
        return data[:cut]

    def _see(self, event: SSEEvent) -> None:
        kind = event_type(event)
        if kind == "response.created":
            self.created = event.data
        elif kind in TERMINAL:
            self.terminal = _object(event.data)
        elif kind == "error":
            self.error_sent = True

    def failure_frame(self, error: GatewayError) -> bytes:
        """The terminal frame that replaces an end the upstream never sent."""
        if self._last_chunk is not None:
            events = SSEParser().feed(self._last_chunk)
            if events:
                self._last = events[-1].data
        code = error.code or "upstream_error"
        if self.created is None:
            payload: dict[str, Any] = {
                "type": "error",
                "sequence_number": _sequence(self._last) + 1 if self._last else 0,
                "error": {
                    "type": error.error_type,
                    "code": code,
                    "message": error.message,
                    "param": error.param,
                },
                "code": code,
                "message": error.message,
                "param": error.param,
            }
            return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
        response = dict(_object(self.created).get("response") or {})
        response.update(status="failed", error={"code": code, "message": error.message})
        self.terminal = {"type": "response.failed", "response": response}
        payload = {
            "type": "response.failed",
            "sequence_number": _sequence(self._last) + 1,
            "response": response,
        }
        return b"event: response.failed\ndata: " + orjson.dumps(payload) + b"\n\n"

    def unkept(self, out: bytes, error: GatewayError) -> bytes:
        """`out` with its terminal frame replaced by `response.failed`: the upstream's final
        response (its output and usage) with status failed, `error`, and store false."""
        assert self.terminal is not None
        response = dict(self.response or {})
        response.update(
            status="failed",
            store=False,
            error={"code": error.code or "server_error", "message": error.message},
        )
        self.terminal = {**self.terminal, "type": "response.failed", "response": response}
        frame = b"event: response.failed\ndata: " + orjson.dumps(self.terminal) + b"\n\n"
        return without_terminal(out) + frame

    @property
    def response(self) -> dict[str, Any] | None:
        if self.terminal is None:
            return None
        response = self.terminal.get("response")
        return response if isinstance(response, dict) else None


async def relay(
    request: web.Request,
    chunks: AsyncIterator[bytes],
    provider: str,
    headers: dict[str, str],
    streams: OpenStreams,
    on_terminal: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> tuple[web.StreamResponse, StreamTap, bool]:
    """Relay to the end; answers the response, the tap, and whether the client stayed.

    `on_terminal` sees the final response before its event goes out, so that a client that
    chains on it at once finds it stored; if it raises a GatewayError (the response could not
    be kept), the terminal event goes out as `response.failed` with that error instead.
    """
    tap = StreamTap()
    # The first chunk is awaited before the 200 goes out, so that an upstream that fails at
    # once is still answered with a plain HTTP error the SDKs type and retry.
    try:
        first = await anext(chunks, b"")
    except UPSTREAM_ERRORS as exc:
        raise upstream_failure(exc, provider) from exc
    if not first:
        raise UpstreamError(
            f"The upstream provider {provider!r} ended the stream without an event."
        )
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    handle = streams.enter()
    try:
        stayed = await _pipe(request, response, tap, first, chunks, provider, on_terminal, handle)
    finally:
        streams.leave(handle)
    return response, tap, stayed


async def _pipe(
    request: web.Request,
    response: web.StreamResponse,
    tap: StreamTap,
    first: bytes,
    chunks: AsyncIterator[bytes],
    provider: str,
    on_terminal: Callable[[dict[str, Any]], Awaitable[None]] | None,
    handle: StreamHandle,
) -> bool:
    failure: GatewayError | None = None
    gaps = metrics.GAPS.labels(provider)
    clock = time.monotonic
    metrics.OPEN_STREAMS.inc()
    try:
        await response.prepare(request)
        chunk = first
        last = tap.first_chunk_at = clock()
        try:
            while True:
                out = tap.feed(chunk)
                if on_terminal is not None and tap.response is not None:
                    try:
                        await on_terminal(tap.response)
                    except GatewayError as exc:  # not kept: the end must not say it was
                        out = tap.unkept(out, exc)
                    on_terminal = None
                if out:
                    await response.write(out)
                    if tap.first_write_at is None:
                        tap.first_write_at = clock()
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except UPSTREAM_ERRORS as exc:
                    failure = upstream_failure(exc, provider)
                    metrics.UPSTREAM_ERRORS.labels(provider, "stream_cut").inc()
                    break
                now = clock()
                gaps.observe(now - last)
                last = now
        except asyncio.CancelledError:
            if not handle.absorb():
                raise
            failure = SHUTTING_DOWN
        if tap.terminal is None and not (tap.error_sent and tap.created is None):
            failure = failure or UpstreamError(
                f"The upstream provider {provider!r} ended the stream before the response was "
                "complete."
            )
            frame = tap.failure_frame(failure)
            if on_terminal is not None and tap.response is not None:
                with contextlib.suppress(GatewayError):  # the frame already says failed
                    await on_terminal(tap.response)
            await response.write(frame)
        await response.write_eof()
    except ConnectionResetError:
        metrics.CLIENTS_GONE.inc()
        return False
    finally:
        metrics.OPEN_STREAMS.dec()
    return True


_FRAME_END = re.compile(rb"(?:\r\n|\r|\n)(?:\r\n|\r|\n)")


def without_terminal(data: bytes) -> bytes:
    """Complete SSE frames, less the terminal ones."""
    kept, start = [], 0
    for end in _FRAME_END.finditer(data):
        frame = data[start : end.end()]
        start = end.end()
        if not any(event_type(e) in TERMINAL for e in SSEParser().feed(frame)):
            kept.append(frame)
    return b"".join(kept) + data[start:]


def _frame_end(data: bytes) -> int:
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _sequence(data: bytes) -> int:
    number = _object(data).get("sequence_number")
    return number if isinstance(number, int) else 0
