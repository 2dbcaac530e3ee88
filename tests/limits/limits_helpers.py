"""Helpers for the limits tests: a Governor factory per store, subjects, unpacking outcomes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as redis

from gateway.config import KeySettings, LimitSettings, Price, Settings
from gateway.errors import GatewayError
from gateway.limits import Governor, Subject, Ticket
from gateway.limits.usage import Usage
from tests.support.clock import FakeClock

START = 1_717_243_200.0  # 2024-06-01T12:00:00Z, a Saturday
PRICE = Price(input=2.0, cached_input=0.5, output=8.0)


class Harness:
    """Makes Governors sharing one store (each its own Redis client); `sleep` lets time pass."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.prefix = f"lt{secrets.token_hex(4)}:"
        # On Redis, windows and leases follow the server's clock; the fake one then only picks
        # budget periods and usage days, so it starts at the real time.
        self.clock = FakeClock(START if kind == "memory" else time.time())
        self.clients: list[redis.Redis] = []

    def governor(self, on_redis_error: str = "open", **kwargs: Any) -> Governor:
        settings = Settings(
            limits=LimitSettings(on_redis_error=on_redis_error, redis_timeout_ms=5000)
        )
        if self.kind == "memory":
            return Governor(settings, None, self.prefix, clock=self.clock, **kwargs)
        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        self.clients.append(client)
        return Governor(settings, client, self.prefix, clock=self.clock, **kwargs)

    async def sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        if self.kind == "redis":
            await asyncio.sleep(seconds)

    async def close(self) -> None:
        if self.clients:
            keys = [k async for k in self.clients[0].scan_iter(match=f"{self.prefix}*")]
            if keys:
                await self.clients[0].delete(*keys)
        for client in self.clients:
            await client.aclose()


def subject(
    key_id: str = "team-a",
    projects: tuple[str, ...] = (),
    model: str = "gpt-test",
    price: Price | None = PRICE,
    **limits: Any,
) -> Subject:
    return Subject(KeySettings(id=key_id, **limits), projects, model, price)


def error_body(error: GatewayError) -> dict[str, object]:
    body = error.envelope()["error"]
    assert isinstance(body, dict)
    return body


async def outcome(admission: Awaitable[Ticket]) -> Ticket | GatewayError:
    try:
        return await admission
    except GatewayError as exc:
        return exc


async def admitted(governor: Governor, who: Subject, tokens: int = 0) -> bool:
    return isinstance(await outcome(governor.admit(who, tokens)), Ticket)


async def settle(
    governor: Governor, ticket: Ticket, usage: Usage | None = None, status: int = 200
) -> float:
    return await governor.settle(
        ticket,
        usage,
        status=status,
        latency_ms=12.5,
        provider="stub",
        upstream_model="gpt-test-upstream",
    )
