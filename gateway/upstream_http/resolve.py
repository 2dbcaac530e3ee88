"""Where an origin is: its addresses, looked up at most once per DNS_TTL_S however many
connections are opened at once (a burst of new streams would otherwise queue thousands of
lookups on the loop's few resolver threads)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Final

from gateway.upstream_http.errors import ConnectError

# How long looked-up addresses are used before the name is looked up again.
DNS_TTL_S: Final = 10.0

Address = tuple[int, int, int, Any]  # family, type, proto, sockaddr


class Addresses:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.found: list[Address] = []
        self.found_at = 0.0
        self.pending: asyncio.Future[list[Address]] | None = None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self.found = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))]
        self.found_at = float("inf")  # a literal address never goes stale

    async def get(self) -> list[Address]:
        loop = asyncio.get_running_loop()
        if self.found and loop.time() - self.found_at < DNS_TTL_S:
            return self.found
        pending = self.pending
        if pending is None:
            pending = self.pending = asyncio.ensure_future(self._look_up())
            pending.add_done_callback(self._settled)
        # Shielded: one caller giving up does not cancel the others' lookup.
        return await asyncio.shield(pending)

    async def _look_up(self) -> list[Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {self.host}: {exc}") from exc
        self.found = [(family, kind, proto, address) for family, kind, proto, _, address in infos]
        self.found_at = loop.time()
        return self.found

    def _settled(self, future: asyncio.Future[list[Address]]) -> None:
        self.pending = None
        if not future.cancelled():
            future.exception()  # retrieved: a failure every waiter left is not logged as lost
