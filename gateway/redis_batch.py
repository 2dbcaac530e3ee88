"""Redis script calls asked in the same loop tick, sent as one round trip.

The store's writes and the limits' admissions and settlements share it (one per client and
timeout), so a busy tick costs one write on one connection, not a round trip per caller. Each
call is an EVALSHA packed once, in C (hiredis), as it is asked; each script stays atomic on its
own, and each caller gets its own reply or error. The connection is taken over from the pool
once (gateway.redis_wire): a tick's calls are written on it without waiting for the previous
tick's replies, which are handed out as they arrive. One timer bounds each round trip. A
NOSCRIPT (Redis restarted empty, or its scripts flushed) sends the refused calls once more,
their script loaded just before them: a call that ran is never sent twice. On a Redis Cluster
the tick's calls go through the cluster client's pipeline, which sends each to its slot's
master.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import hiredis
import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError, NoScriptError, ResponseError

from gateway.redis_wire import Wire

# What a caller gets: the reply, or the exception standing for it (a CancelledError when the
# round trip was cancelled at shutdown).
Deliver = Callable[[Any], None]
Arg = str | bytes | int | float


@dataclass(slots=True)
class _Call:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[Arg]
    packed: bytes
    deliver: Deliver
    again: bool = False  # sent once more after a NOSCRIPT


class Batch:
    def __init__(self, client: redis.Redis | redis.RedisCluster, timeout_s: float) -> None:
        # Typed Any: redis-py annotates its asyncio commands with the sync client's unions.
        self.client: Any = client
        self.timeout_s = timeout_s
        self.cluster = isinstance(client, redis.RedisCluster)
        self._calls: list[_Call] = []
        self._hooks: list[Callable[[], None]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        # The connection taken over for this batch's round trips (gateway.redis_wire); none on
        # a Cluster, or when this client's connections cannot be taken over.
        self._wire: Wire | None = None
        self._no_wire = self.cluster
        self._taking = asyncio.Lock()

    def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg], deliver: Deliver
    ) -> None:
        """Queue one script call for this tick's round trip; `deliver` gets its reply."""
        packed = b"" if self.cluster else _pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        self._calls.append(_Call(script, keys, args, packed, deliver))
        self._schedule()

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """One script call in this tick's round trip; its reply, or its error raised."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.call(script, keys, args, lambda reply: resolve(answer, reply))
        return await answer

    def before_send(self, hook: Callable[[], None]) -> None:
        """Run `hook` just before this tick's round trip is sent (it may queue calls: the
        admissions of a tick gathered into one script call, say)."""
        self._hooks.append(hook)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()
        self._scheduled = False
        calls, self._calls = self._calls, []
        if not calls:
            return
        wire = self._wire
        if wire is not None and wire.ready():
            self._write(wire, calls)  # the common case: no task, no lock, no wait
        else:
            self._spawn(self._round_trip(calls))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _write(self, wire: Wire, calls: list[_Call]) -> None:
        sent = _Sent(self, wire, len(calls))
        wire.send(b"".join([c.packed for c in calls]), [partial(sent.answer, c) for c in calls])

    async def _round_trip(self, calls: list[_Call]) -> None:
        """A round trip that must first take a connection over, or cannot use one."""
        wire: Wire | None = None
        replies: list[Any] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                wire = None if self._no_wire else await self._take_wire()
                if wire is None:
                    replies = await self._answers(calls)
        except asyncio.CancelledError as exc:
            for call in calls:
                call.deliver(exc)
            raise
        except Exception as exc:  # every caller sees the failure (and falls back, or 503s)
            wire, replies = None, [exc] * len(calls)
        if wire is not None:
            self._write(wire, calls)
            return
        for call, reply in zip(calls, replies, strict=True):
            call.deliver(reply)

    async def _take_wire(self) -> Wire | None:
        async with self._taking:
            wire = self._wire
            if wire is not None and wire.ready():
                return wire
            pool = self.client.connection_pool
            if wire is not None:  # lost, or quiet too long: given back to the pool, closed
                self._wire = None
                wire.fail(RedisConnectionError("Redis connection quiet too long"))
                await wire.conn.disconnect(nowait=True)
                await pool.release(wire.conn)
            conn = await pool.get_connection()
            try:
                await conn.check_health()  # a PING first if it was quiet too long
            except BaseException:
                await pool.release(conn)
                raise
            wire = Wire.take(conn)
            if wire is None:
                self._no_wire = True
                await pool.release(conn)
            self._wire = wire
            return wire

    def _reload(self, refused: list[_Call]) -> None:
        """Calls a NOSCRIPT refused (they did not run) go once more, in the next round trip,
        each script loaded just before them in the same write."""
        scripts = {id(c.script): c.script for c in refused}.values()
        loads = [
            _Call(s, (), (), _pack(("SCRIPT", "LOAD", s.script)), _ignore, True) for s in scripts
        ]
        for call in refused:
            call.again = True
        self._calls[:0] = loads + refused
        self._schedule()

    async def _answers(self, calls: list[_Call]) -> list[Any]:
        """Every call's reply in its place; the calls a NOSCRIPT refused go once more, after
        their script is loaded (it did not run: no call is sent twice)."""
        send = self._pipelined if self.cluster else self._raw
        replies = await send(calls)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            for script in {id(calls[i].script): calls[i].script for i in refused}.values():
                script.sha = await self.client.script_load(script.script)
            for i, reply in zip(refused, await send([calls[i] for i in refused]), strict=True):
                replies[i] = reply
        return replies

    async def _raw(self, calls: list[_Call]) -> list[Any]:
        """The calls, pre-packed, on one pooled connection: one write, then their replies."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        replies: list[Any] = []

        async def exchange() -> list[Any]:
            # After a broken connection is replaced, only the calls not yet answered go again.
            rest = calls[len(replies) :]
            await conn.send_packed_command(b"".join([c.packed for c in rest]))
            for _ in rest:
                try:
                    replies.append(await conn.read_response(timeout=_NO_READ_TIMER))
                except ResponseError as exc:
                    replies.append(exc)
            return replies

        async def failed(error: Exception) -> None:
            await conn.disconnect(error=error)

        try:
            await conn.retry.call_with_retry(exchange, failed)
            return replies
        finally:
            await pool.release(conn)

    async def _pipelined(self, calls: list[_Call]) -> list[Any]:
        """On a Cluster: the cluster client's pipeline (a write per master of the keys)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for c in calls:
                _ = pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


class _Sent:
    """One round trip on the wire: hands each reply to its caller, and fails the connection if
    the replies are not all in within the timeout (one timer per round trip)."""

    __slots__ = ("batch", "left", "refused", "timer", "wire")

    def __init__(self, batch: Batch, wire: Wire, n: int) -> None:
        self.batch, self.wire, self.left = batch, wire, n
        self.refused: list[_Call] = []
        self.timer = asyncio.get_running_loop().call_later(batch.timeout_s, self.expire)

    def answer(self, call: _Call, reply: Any) -> None:
        if isinstance(reply, NoScriptError) and not call.again:
            self.refused.append(call)
        else:
            call.deliver(reply)
        self.left -= 1
        if not self.left:
            self.timer.cancel()
            if self.refused:
                self.batch._reload(self.refused)

    def expire(self) -> None:
        if self.left:
            self.wire.fail(TimeoutError(f"Redis did not answer within {self.batch.timeout_s} s"))


# The round trip has its own timer; a read needs none of its own (redis-py sets one per read).
_NO_READ_TIMER = float("inf")


def _pack(command: tuple[Any, ...]) -> bytes:
    """A command as RESP, packed in C (hiredis's stub types its argument as a 1-tuple; any
    length is packed)."""
    packed: bytes = hiredis.pack_command(cast(Any, command))
    return packed


def _ignore(reply: Any) -> None:
    """A script load's reply: if it failed, the call after it says so."""


def resolve(answer: asyncio.Future[Any], reply: Any) -> None:
    """Hand a reply (or the exception standing for it) to a caller still waiting."""
    if answer.done():  # its caller left, or timed out waiting
        return
    if isinstance(reply, asyncio.CancelledError):
        answer.cancel()
    elif isinstance(reply, BaseException):
        answer.set_exception(reply)
    else:
        answer.set_result(reply)


_shared: weakref.WeakKeyDictionary[Any, dict[float, Batch]] = weakref.WeakKeyDictionary()


def forget(client: redis.Redis | redis.RedisCluster) -> None:
    """The client is closing: its Batches go with it (each holds the client, so the weak map
    alone would keep both for the life of the process)."""
    _shared.pop(client, None)


def shared(client: redis.Redis | redis.RedisCluster, timeout_s: float) -> Batch:
    """The one Batch of a client and timeout: the store and the limits on one Redis share it."""
    per_timeout = _shared.setdefault(client, {})
    found = per_timeout.get(timeout_s)
    if found is None:
        found = per_timeout[timeout_s] = Batch(client, timeout_s)
    return found
