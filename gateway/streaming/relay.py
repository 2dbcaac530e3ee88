"""Pipe an upstream event stream to the client byte for byte, tapping only what it must."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway import metrics
from gateway.errors import (
    GatewayError,
    ServiceUnavailableError,
    UpstreamError,
    error_frame,
    failed_event,
    response_error,
)
from gateway.errors_upstream import UPSTREAM_ERRORS, cut_stream, upstream_failure
from gateway.events import COMPLETED, CREATED, ERROR, FAILED, IN_PROGRESS, LIFECYCLE, TERMINAL
from gateway.streaming.drain import OpenStreams, StreamHandle
from gateway.streaming.response import SSEResponse, drained
from gateway.streaming.sink import Sink
from gateway.streaming.sse import SSEEvent, SSEParser, encode_event, event_type, parse_frame

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
SHUTTING_DOWN = ServiceUnavailableError(
    "The gateway replica serving this stream is shutting down; send the request again.",
    code="gateway_shutdown",
)
# The events the tap keeps, by their `event:` line; a false alarm (the words in a delta's
# text) only costs parsing that one frame. The names (LIFECYCLE and ERROR) are written as a
# tree of their shared prefixes: at each `e` the engine then tries one branch, not six, a
# fifth fewer instructions per byte scanned than the flat alternation.
_NAMES_RE = re.compile(
    rb"event: (?:error|response\.(?:c(?:ompleted|reated)|in(?:_progress|complete)|failed))"
)
# A frame that names no lifecycle event, neither in its `event:` line nor in its data's
# `type` (both read as raw bytes), cannot be one: restating passes it on unparsed.
_LIFECYCLE_NAMES = tuple(name.encode() for name in sorted(LIFECYCLE))
_LIFECYCLE_RE = re.compile(b"|".join(map(re.escape, _LIFECYCLE_NAMES)))
# What ends the `type` of every delta event (output text, arguments, reasoning...): counted,
# never parsed, to estimate the output of a stream that ended without its usage. A quote in
# a delta's text is escaped, so the text cannot fake it.
_DELTA = b'.delta"'
_FRAME_GAP = re.compile(rb"(?:\r\n|\r|\n)(?:\r\n|\r|\n)")


class StreamTap:
    """Watches the frames going by: holds back a partial frame, keeps the lifecycle events.

    Only the frames are split (bytes.find); the JSON of the lifecycle events (`response.created`,
    `response.in_progress`, the terminal event) is decoded, no delta event ever is. With
    `fields`, the lifecycle events go out with those fields of their Response restated (the
    gateway's view, e.g. `store`); every other frame goes out byte for byte.
    """

    __slots__ = (
        "_fields",
        "_held",
        "_last",
        "_last_chunk",
        "_parser",
        "_prev",
        "_restate",
        "created",
        "delivered",
        "deltas",
        "error_sent",
        "first_chunk_at",
        "first_write_at",
        "terminal",
    )

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        self._parser = SSEParser()
        self._held = b""
        self._last = self._prev = b""
        self._last_chunk: bytes | None = None
        self._fields = fields or None
        self._restate = False
        self.created: bytes | None = None
        self.terminal: dict[str, Any] | None = None
        self.error_sent = False
        # Delta events sent on (about one output token each), until the usage is known.
        self.deltas = 0
        self.delivered = False  # the terminal event was written to the client
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
            out = self._named(chunk)
            if self._counting():
                self.deltas += chunk.count(_DELTA)
            return out
        self._last_chunk = None
        for event in self._parser.feed(chunk):
            self._see(event)
            self._prev, self._last = self._last, event.data
        data = self._held + chunk if self._held else chunk
        if not self._parser.at_boundary:
            cut = _frame_end(data)
            self._held = data[cut:]
            data = data[:cut]
        else:
            self._held = b""
        if self._counting():
            self.deltas += data.count(_DELTA)
        return self._restated(data)

    def _counting(self) -> bool:
        """Whether deltas still count: only until a terminal event brings the usage, the
        estimate they feed is never made after it."""
        response = self.response
        return response is None or not isinstance(response.get("usage"), dict)

    def _named(self, chunk: bytes) -> bytes:
        """Whole named frames: one pass finds the lifecycle ones, each is parsed once and,
        restating, rewritten where it was found (unless the chunk is not all named,
        LF-framed frames: then _restated looks for them as in any other chunk)."""
        inline: bool | None = True if self._fields is None else None  # known at a first hit
        pieces: list[bytes] = []
        copied = end = 0
        for hit in _NAMES_RE.finditer(chunk):
            at = hit.start()
            if at < end:
                continue  # in the frame just looked at
            if inline is None:
                inline = b"\r" not in chunk and (
                    chunk.count(b"\n\n") == chunk.count(b"\n\nevent: ") + 1
                )
            before = chunk.rfind(b"\n\n", 0, at)
            start = 0 if before < 0 else before + 2
            end = chunk.find(b"\n\n", at) + 2
            frame = chunk[start:end]
            if b"\r" in frame:
                events = SSEParser().feed(frame)
            else:
                event = parse_frame(frame[:-2])
                events = [] if event is None else [event]
            for event in events:
                decoded = self._see(event)
                if inline and self._fields is not None:
                    restated = self._restate_event(event, decoded)
                    if restated is not None:
                        pieces += (chunk[copied:start], restated)
                        copied = end
        if not inline:
            return self._restated(chunk)  # (with no lifecycle frame, the chunk as it came)
        self._restate = False
        if not pieces:
            return chunk
        pieces.append(chunk[copied:])
        return b"".join(pieces)

    def _restate_event(self, event: SSEEvent, decoded: dict[str, Any] | None) -> bytes | None:
        """A lifecycle event's whole frame with the gateway's fields in its Response (`decoded`:
        its JSON when _see decoded it already), or None to send it as it came."""
        if event_type(event) not in LIFECYCLE:
            return None
        value = decoded if decoded is not None else _object(event.data)
        response = value.get("response")
        if not isinstance(response, dict):
            return None
        assert self._fields is not None
        response.update(self._fields)
        return encode_event(orjson.dumps(value), event.event)

    def _see(self, event: SSEEvent) -> dict[str, Any] | None:
        """Keep what a lifecycle event says; answers the JSON of a terminal one (decoded)."""
        kind = event_type(event)
        if kind == CREATED:
            self.created = event.data
            self._restate = self._fields is not None
        elif kind in TERMINAL:
            # A terminal event that is not a Response (invalid JSON) ends nothing: the
            # stream is then ended as one the upstream cut.
            terminal = _object(event.data)
            if isinstance(terminal.get("response"), dict):
                self.terminal = terminal
                if self._fields is not None:
                    terminal["response"].update(self._fields)
                    self._restate = True
            return terminal
        elif kind == IN_PROGRESS:
            self._restate = self._fields is not None
        elif kind == ERROR:
            self.error_sent = True
        return None

    def _restated(self, out: bytes) -> bytes:
        """`out` with the gateway's fields put into its lifecycle events (rare: about three
        frames a stream; the chunks of deltas in between are never looked at)."""
        if not self._restate:
            return out
        self._restate = False
        assert self._fields is not None
        # Only the frames holding a lifecycle name are looked at; the rest is copied whole.
        hits = [m.start() for m in _LIFECYCLE_RE.finditer(out)]
        pieces: list[bytes] = []
        start = copied = i = 0
        for gap in _FRAME_GAP.finditer(out):
            if i == len(hits):
                break
            if hits[i] < gap.start():
                pieces += (out[copied:start], self._restate_frame(out[start : gap.start()]))
                copied = gap.start()
                while i < len(hits) and hits[i] < gap.end():
                    i += 1
            start = gap.end()
        pieces.append(out[copied:])
        return b"".join(pieces)

    def _restate_frame(self, frame: bytes) -> bytes:
        if not any(name in frame for name in _LIFECYCLE_NAMES):
            return frame
        events = SSEParser().feed(frame + b"\n\n")
        if len(events) != 1 or event_type(events[0]) not in LIFECYCLE:
            return frame
        event = _object(events[0].data)
        response = event.get("response")
        if not isinstance(response, dict):
            return frame
        assert self._fields is not None
        response.update(self._fields)
        name = events[0].event
        return encode_event(orjson.dumps(event), name)[:-2]  # the gap after it is kept

    def failure_frame(self, error: GatewayError) -> bytes:
        """The terminal frame that replaces an end the upstream never sent."""
        recent = [self._prev, self._last]
        if self._last_chunk is not None:
            recent = [e.data for e in SSEParser().feed(self._last_chunk)]
        sequence = next((n for n in map(_sequence, reversed(recent)) if n is not None), None)
        sequence = 0 if sequence is None else sequence + 1
        if self.created is None:
            return error_frame(error, sequence, error.code or "upstream_error")
        response = dict(_object(self.created).get("response") or {})
        response.update(self._fields or {})
        response.update(status="failed", error=response_error(error, "upstream_error"))
        self.terminal = failed_event(response, sequence)
        return self.terminal_frame()

    def terminal_frame(self) -> bytes:
        """The terminal event as it stands now (after the store said what it kept)."""
        assert self.terminal is not None
        name = str(self.terminal.get("type", COMPLETED)).encode()
        return b"event: " + name + b"\ndata: " + orjson.dumps(self.terminal) + b"\n\n"

    def said_kept(self) -> bool:
        """Whether the events restated a stored response the store then did not keep."""
        kept = self.response is not None and self.response.get("store") is not False
        return bool(self._fields and self._fields.get("store")) and not kept

    def unkept(self, out: bytes, error: GatewayError) -> bytes:
        """`out` with its terminal frame replaced by `response.failed`: the upstream's final
        response (its output and usage) with status failed, `error`, and store false."""
        assert self.terminal is not None
        response = dict(self.response or {})
        response.update(status="failed", store=False, error=response_error(error))
        self.terminal = {**self.terminal, "type": FAILED, "response": response}
        return without_terminal(out) + self.terminal_frame()

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
    tap: StreamTap | None = None,
    sink: Sink | None = None,
) -> tuple[web.StreamResponse, StreamTap, bool]:
    """Relay to the end; answers the response, the tap, and whether the client stayed.

    `on_terminal` sees the final response before its event goes out, so that a client that
    chains on it at once finds it stored; if it raises a GatewayError (the response could not
    be kept), the terminal event goes out as `response.failed` with that error instead. A
    caller that passes its own `tap` can still read what went by when the relay is cancelled
    (its client left). A `sink` takes the frames instead of the SSE response (which is then
    answered unprepared).
    """
    tap = tap or StreamTap()
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
    response = SSEResponse(headers={**SSE_HEADERS, **headers})
    handle = streams.enter()
    try:
        out = response if sink is None else sink
        stayed = await _pipe(request, out, tap, first, chunks, provider, on_terminal, handle)
    finally:
        streams.leave(handle)
    return response, tap, stayed


async def _pipe(
    request: web.Request,
    response: Sink,
    tap: StreamTap,
    first: bytes,
    chunks: AsyncIterator[bytes],
    provider: str,
    on_terminal: Callable[[dict[str, Any]], Awaitable[None]] | None,
    handle: StreamHandle,
) -> bool:
    failure: GatewayError | None = None
    gaps = metrics.gaps(provider)
    clock = time.monotonic
    metrics.OPEN_STREAMS.inc()
    try:
        await response.prepare(request)  # the head goes out with the first write
        chunk = first
        held = b""  # the last events, when the upstream's end came with them: sent with ours
        last = tap.first_chunk_at = clock()
        try:
            while True:
                out = tap.feed(chunk)
                if on_terminal is not None and tap.response is not None:
                    try:
                        await on_terminal(tap.response)
                    except GatewayError as exc:  # not kept: the end must not say it was
                        out = tap.unkept(out, exc)
                    else:
                        if tap.said_kept():  # the id was taken: the end says store false
                            out = without_terminal(out) + tap.terminal_frame()
                    on_terminal = None
                if out and drained(chunks):
                    held = out  # one write for them and the end of the body, below
                elif out:
                    await response.write(out)
                    if tap.first_write_at is None:
                        tap.first_write_at = clock()
                    if tap.terminal is not None:
                        tap.delivered = True
                elif chunk is first:
                    await response.write(out)  # no whole event yet: the head goes out alone
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
        framed = False
        if tap.terminal is None and not (tap.error_sent and tap.created is None):
            failure = failure or cut_stream(provider)
            frame = tap.failure_frame(failure)
            if on_terminal is not None and tap.response is not None:
                try:
                    await on_terminal(tap.response)
                except GatewayError:
                    tap.response["store"] = False
                if tap.said_kept():  # what the end says is what was kept
                    frame = tap.terminal_frame()
            held += frame
            framed = True
        await response.write_eof(held)
        if held:
            if tap.first_write_at is None:
                tap.first_write_at = clock()
            if tap.terminal is not None or framed:
                tap.delivered = True
    except ConnectionResetError:
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


def _sequence(data: bytes) -> int | None:
    number = _object(data).get("sequence_number") if data else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None
