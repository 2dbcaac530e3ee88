"""Redis script calls asked in the same loop tick, sent as one round trip.

The store's writes and the limits' admissions and settlements share it (one per client and
timeout), so a busy tick costs one write and one read on one pooled connection, not one per
caller. Each call is an EVALSHA packed once, in C (hiredis), as it is asked; each script stays
atomic on its own, and each caller gets its own reply or error. One timer bounds the round
trip. A NOSCRIPT (Redis restarted empty, or its scripts flushed) loads the script and sends
again only the calls it refused: a call that ran is never sent twice. On a Redis Cluster the
tick's calls go through the cluster client's pipeline, which sends each to its slot's master.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

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

    def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg], deliver: Deliver
    ) -> None:
        """Queue one script call for this tick's round trip; `deliver` gets its reply."""
        packed = (
            b""
            if self.cluster
            # (hiredis's stub types its argument as a 1-tuple; any length is packed)
            else hiredis.pack_command(cast(Any, ("EVALSHA", script.sha, len(keys), *keys, *args)))
        )
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
        if calls:
            task = asyncio.create_task(self._round_trip(calls))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _round_trip(self, calls: list[_Call]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._answers(calls)
        except asyncio.CancelledError as exc:
            for call in calls:
                call.deliver(exc)
            raise
        except Exception as exc:  # every caller sees the failure (and falls back, or 503s)
            replies = [exc] * len(calls)
        for call, reply in zip(calls, replies, strict=True):
            call.deliver(reply)

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


# The round trip has its own timer; a read needs none of its own (redis-py sets one per read).
_NO_READ_TIMER = float("inf")


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


def shared(client: redis.Redis | redis.RedisCluster, timeout_s: float) -> Batch:
    """The one Batch of a client and timeout: the store and the limits on one Redis share it."""
    per_timeout = _shared.setdefault(client, {})
    found = per_timeout.get(timeout_s)
    if found is None:
        found = per_timeout[timeout_s] = Batch(client, timeout_s)
    return found
