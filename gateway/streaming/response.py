"""The SSE answer to a stream: its head waits for the first body bytes, to go out with them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


class SSEResponse(web.StreamResponse):
    """A StreamResponse whose status line and headers are sent with the first write, not by
    prepare() on their own: one send to the client, not two, for the head and the first events.

    (aiohttp buffers the head this way for its own Response; a write of b"" sends it alone.)
    """

    _send_headers_immediately = False


def drained(chunks: AsyncIterator[bytes]) -> bool:
    """Whether the upstream's whole body has arrived and been handed out, so that the next read
    ends the stream without waiting (said by the gateway's own upstream client; any other
    source of chunks, a guard's filter or aiohttp's, is never known to be drained)."""
    return getattr(chunks, "drained", False) is True
