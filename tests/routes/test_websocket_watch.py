"""The watch over open sockets: each distinct key checked once a round, however many sockets
share it; a refused key ends its sockets only; a drain reaches every socket."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

from gateway.auth import KeyRing
from gateway.errors import AuthenticationError
from gateway.streaming.sockets import OpenSockets
from tests.support.stream_faults import wait_for


class FakeKeys:
    """KeyRing.authenticate's contract: the caller's key, or AuthenticationError."""

    def __init__(self) -> None:
        self.calls: Counter[str | None] = Counter()
        self.refused: set[str] = set()

    async def authenticate(self, authorization: str | None) -> object:
        self.calls[authorization] += 1
        if authorization in self.refused:
            raise AuthenticationError("The API key has been disabled.")
        return object()


class Socket:
    def __init__(self, authorization: str) -> None:
        self.authorization: str | None = authorization
        self.drained = 0
        self.refused: list[AuthenticationError] = []

    def drain(self) -> None:
        self.drained += 1

    def refuse(self, error: AuthenticationError) -> None:
        self.refused.append(error)


def watch_all(sockets: list[Socket], keys: FakeKeys, draining: list[bool]) -> OpenSockets:
    watch = OpenSockets(every_s=0.001)
    for socket in sockets:
        watch.add(socket, cast(KeyRing, keys), lambda: bool(draining))
    return watch


async def test_each_key_is_checked_once_a_round_however_many_sockets_share_it() -> None:
    keys = FakeKeys()
    sockets = [Socket("Bearer shared") for _ in range(50)] + [Socket("Bearer alone")]
    watch = watch_all(sockets, keys, [])
    await wait_for(lambda: keys.calls["Bearer alone"] >= 5)
    for socket in sockets:
        watch.discard(socket)
    assert abs(keys.calls["Bearer shared"] - keys.calls["Bearer alone"]) <= 1


async def test_a_refused_key_ends_only_its_own_sockets() -> None:
    keys = FakeKeys()
    keys.refused.add("Bearer gone")
    gone, kept = Socket("Bearer gone"), Socket("Bearer kept")
    watch = watch_all([gone, kept], keys, [])
    await wait_for(lambda: gone.refused)
    assert kept.refused == []
    watch.discard(gone)
    watch.discard(kept)


async def test_a_drain_reaches_every_socket_and_the_watch_ends_with_the_last() -> None:
    keys, draining = FakeKeys(), [True]
    sockets = [Socket("Bearer a"), Socket("Bearer b")]
    watch = watch_all(sockets, keys, draining)
    await wait_for(lambda: all(s.drained for s in sockets))
    task: Any = watch._task
    for socket in sockets:
        watch.discard(socket)
    assert len(watch) == 0
    await asyncio.wait([task])
    assert task.cancelled()
