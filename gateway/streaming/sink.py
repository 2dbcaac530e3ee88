"""Where a relayed stream goes: an SSE response (web.StreamResponse) or a WebSocket's frames."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class Sink(Protocol):
    """Takes whole SSE frames, in order; a client that is gone raises ConnectionResetError."""

    async def prepare(self, request: web.Request, /) -> object: ...

    async def write(self, data: bytes, /) -> None: ...

    async def write_eof(self, data: bytes = b"", /) -> None: ...
