"""What a gateway under test writes to its clients' sockets, one entry per send."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web


class _RecordingTransport:
    """A connection's transport that records each write (what one send() hands the kernel)."""

    def __init__(self, inner: Any, writes: list[bytes]) -> None:
        self._inner = inner
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._inner.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.write(b"".join(chunks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class WriteRecorder:
    """Put on an app's on_response_prepare: from then on, every write on that connection."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def __call__(self, request: web.Request, response: web.StreamResponse) -> None:
        protocol: Any = request.protocol
        if not isinstance(protocol.transport, _RecordingTransport):
            protocol.transport = _RecordingTransport(protocol.transport, self.writes)
