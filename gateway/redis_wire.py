"""One pooled Redis connection taken over for pipelined script calls.

redis-py reads a round trip's replies in a task of its own, behind the pool's lock, with a
timer per write; on a busy gateway that cost more than the calls. Here the connection (opened,
authenticated and selected by redis-py, so TLS, passwords and databases work as configured) is
taken out of the pool once, and its replies are parsed (hiredis) as they arrive and handed to
their callers in the order the calls were written. Nothing is written twice: when the
connection breaks, every call still waiting gets the error, and the next round trip takes a
new connection from the pool.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError, InvalidResponse

# What a reply is handed to, with the reply or the exception standing for it.
Answer = Callable[[Any], None]


class Wire(asyncio.Protocol):
    def __init__(self, conn: Any, transport: asyncio.Transport, inner: asyncio.BaseProtocol):
        self.conn = conn  # redis-py's Connection, given back to its pool once this one is lost
        self.transport = transport
        self.inner = inner  # redis-py's protocol: told when the connection closes
        self.reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self.waiting: deque[Answer] = deque()
        self.lost: BaseException | None = None
        self.loop = asyncio.get_running_loop()
        # A connection quiet for redis-py's health-check interval is not trusted (a firewall
        # may have dropped it without a word): it is given back and a checked one taken.
        self.quiet_s = float(getattr(conn, "health_check_interval", 0) or 30)
        self.heard = self.loop.time()

    @classmethod
    def take(cls, conn: Any) -> Wire | None:
        """Take over a connected redis-py connection with nothing in flight; None when this
        client's connections cannot be (the caller keeps to redis-py's own round trips)."""
        writer = getattr(conn, "_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None or not hasattr(transport, "set_protocol") or transport.is_closing():
            return None
        wire = cls(conn, transport, transport.get_protocol())
        transport.set_protocol(wire)
        return wire

    def ready(self) -> bool:
        return (
            self.lost is None
            and not self.transport.is_closing()
            and self.loop.time() - self.heard < self.quiet_s
        )

    def send(self, data: bytes, answers: list[Answer]) -> None:
        self.waiting.extend(answers)
        try:
            self.transport.write(data)
        except (RuntimeError, OSError) as exc:  # closed under it, before connection_lost
            self.fail(RedisConnectionError(f"Connection to Redis lost ({exc})"))

    def data_received(self, data: bytes) -> None:
        self.heard = self.loop.time()
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:
                    raise InvalidResponse("a reply no call was waiting for")
                self.waiting.popleft()(reply)
        except InvalidResponse as exc:
            self.fail(RedisConnectionError(f"Redis sent what cannot be read: {exc}"))

    def fail(self, exc: BaseException) -> None:
        """Close the connection; every call still waiting gets `exc`."""
        if self.lost is None:
            self.lost = exc
        self.transport.abort()
        waiting, self.waiting = self.waiting, deque()
        for answer in waiting:
            answer(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Connection to Redis lost ({exc or 'closed'})"))
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
