"""Open WebSockets, watched together: each key still valid, and whether the process drains.

One task checks every socket a few times a second, each distinct key once a round, so that
thousands of idle sockets cost one wake-up a round, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol

from gateway.errors import AuthenticationError, GatewayError

if TYPE_CHECKING:
    from gateway.auth import KeyRing

log = logging.getLogger("gateway")

# How often every open socket's key is checked again (disabled or deleted: the socket
# closes), and the drain looked for.
CHECK_EVERY_S: Final = 0.25


class Watched(Protocol):
    authorization: str | None

    def drain(self) -> None:
        """The process is draining: finish what is in flight, then close with 1001."""

    def refuse(self, error: AuthenticationError) -> None:
        """The key no longer authenticates: end the socket now."""


class OpenSockets:
    def __init__(self, every_s: float = CHECK_EVERY_S) -> None:
        self.every_s = every_s
        self._sockets: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, socket: Watched, keys: KeyRing, draining: Callable[[], bool]) -> None:
        self._sockets.add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(keys, draining))

    def discard(self, socket: Watched) -> None:
        self._sockets.discard(socket)
        if not self._sockets and self._task is not None:
            self._task.cancel()  # nothing left to watch: no task outlives the last socket
            self._task = None

    async def _watch(self, keys: KeyRing, draining: Callable[[], bool]) -> None:
        while self._sockets:
            await asyncio.sleep(self.every_s)
            if draining():
                for socket in list(self._sockets):
                    socket.drain()
            for authorization, sockets in _by_key(self._sockets).items():
                try:
                    await keys.authenticate(authorization)
                except AuthenticationError as exc:
                    for socket in sockets:
                        socket.refuse(exc)
                except GatewayError:
                    continue  # the key store is failing: each key's last word stands
                except Exception:
                    # A fault of the gateway's own: the sockets keep their keys' last word,
                    # and the fault is logged once, not four times a second.
                    if not self._failed:
                        log.exception("checking the keys of open sockets failed")
                    self._failed = True


def _by_key(sockets: Iterable[Watched]) -> dict[str | None, list[Watched]]:
    grouped: dict[str | None, list[Watched]] = {}
    for socket in sockets:
        grouped.setdefault(socket.authorization, []).append(socket)
    return grouped
