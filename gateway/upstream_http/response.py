"""An upstream's answer: status and headers at once, the body read whole or as it arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from multidict import CIMultiDict

if TYPE_CHECKING:
    from gateway.upstream_http.connection import Connection


class Response:
    """The answer on a connection the response holds until release() (back to the pool when
    the body was read to its end) or close(). Iterating it yields the body's chunks as they
    arrive; read() waits for the whole body."""

    __slots__ = ("_conn", "_headers", "_raw", "_release", "status")

    def __init__(self, conn: Connection, release: Callable[[Connection], None]) -> None:
        self._release = release  # the pool's: takes the connection back, or closes it
        self._conn: Connection | None = conn
        self.status = conn.status
        self._raw = conn.raw_headers  # the connection starts a new list for its next answer
        self._headers: CIMultiDict[str] | None = None

    @property
    def headers(self) -> CIMultiDict[str]:
        """The answer's headers, case-insensitive (decoded on first use)."""
        if self._headers is None:
            self._headers = CIMultiDict(
                (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                for name, value in self._raw
            )
        return self._headers

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased; as aiohttp's when absent."""
        if self._headers is None:
            for name, value in self._raw:
                if name.lower() == b"content-type":
                    return value.split(b";", 1)[0].strip().lower().decode("latin-1")
            return "application/octet-stream"
        text = self.headers.get("Content-Type")
        if text is None:
            return "application/octet-stream"
        return text.split(";", 1)[0].strip().lower()

    @property
    def drained(self) -> bool:
        """Whether the whole body has arrived and been handed out: the next read ends the
        iteration at once, without waiting."""
        conn = self._conn
        return conn is None or (conn.complete and not conn.chunks)

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            body = await conn.read_all()
        except BaseException:
            self.close()
            raise
        self.release()
        return body

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            data = await conn.next_chunk()
        except BaseException:
            self.close()
            raise
        if not data:
            self.release()
            raise StopAsyncIteration
        return data

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read to
        the end, and is closed otherwise (which is how the upstream learns nobody listens)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._release(conn)

    def close(self) -> None:
        """Done with the answer and its connection: closed, never pooled."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.close()
            self._release(conn)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
