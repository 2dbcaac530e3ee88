"""Sans-IO server-sent events: an incremental parser and an encoder, bytes in and out."""

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_FRAME: Final = 16 * 1024 * 1024
_TYPE_SCAN: Final = 200
_TYPE_RE: Final = re.compile(rb'"type"\s*:\s*"([^"\\]*)"')


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: bytes


class SSEParser:
    """Incremental WHATWG-style parser: feed it chunks, get back the events they complete."""

    __slots__ = ("_blank", "_max_frame", "_parts", "_pending_cr", "_size", "_tail_lf")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._max_frame = max_frame
        # The unfinished frame, kept as pieces so a large frame arriving in
        # small chunks is joined once, not once per chunk.
        self._parts: list[bytes] = []
        self._size = 0
        self._tail_lf = False
        self._blank = True  # the buffer holds nothing but blank lines
        # A CR ending one chunk and an LF opening the next are one line end.
        self._pending_cr = False

    @property
    def at_boundary(self) -> bool:
        return self._blank

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._pending_cr = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n\n" not in chunk and not (self._tail_lf and chunk[0] == 0x0A):
            self._buffer(chunk)
            return []
        text = b"".join((*self._parts, chunk)) if self._parts else chunk
        frames = text.split(b"\n\n")
        self._parts, self._size, self._tail_lf, self._blank = [], 0, False, True
        self._buffer(frames.pop())
        events = []
        for frame in frames:
            if len(frame) > self._max_frame:
                raise ValueError(f"SSE frame over {self._max_frame} bytes")
            event = _parse_frame(frame)
            if event is not None:
                events.append(event)
        return events

    def _buffer(self, piece: bytes) -> None:
        if not piece:
            return
        self._parts.append(piece)
        self._size += len(piece)
        self._tail_lf = piece[-1] == 0x0A
        self._blank = self._blank and piece.count(b"\n") == len(piece)
        # The trailing LF may belong to the separator, so it does not count.
        if self._size - self._tail_lf > self._max_frame:
            raise ValueError(f"SSE frame over {self._max_frame} bytes")


def _parse_frame(frame: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        colon = line.find(b":")
        if colon == 0 or not line:
            continue
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace") or None
    if not data:
        return None
    return SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))


def parse_frame(frame: bytes) -> SSEEvent | None:
    """One frame, LF-framed and without the blank line that ends it; None if it has no data."""
    return _parse_frame(frame)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One frame; multi-line data becomes several `data:` lines."""
    head = b""
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("SSE event name contains a line break")
        head = b"event: " + event.encode() + b"\n"
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
    return head + b"data: " + data + b"\n\n"


def event_type(ev: SSEEvent) -> str | None:
    """The `event:` name, else the top-level JSON `type` guessed from the head of the data."""
    if ev.event is not None:
        return ev.event
    head = ev.data[:_TYPE_SCAN]
    for match in _TYPE_RE.finditer(head):
        # Skip a nested object's "type" that precedes the top-level one.
        start = match.start()
        if head.count(b"{", 0, start) - head.count(b"}", 0, start) == 1:
            return match.group(1).decode("utf-8", "replace")
    return None
