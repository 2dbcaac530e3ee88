"""RedisStore: the shared state in Redis (redis.asyncio with hiredis), one client per process."""

from __future__ import annotations

import redis.asyncio as redis
from redis.exceptions import RedisError

from gateway.errors import ServiceUnavailableError


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url, socket_timeout=max(timeout_s, 0.05), socket_connect_timeout=max(timeout_s, 0.05),
            health_check_interval=30,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise unavailable(exc) from exc


def unavailable(exc: BaseException) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"The gateway's state store is unreachable ({type(exc).__name__}); try again shortly.",
        code="store_unavailable", headers={"retry-after": "1"},
    )
