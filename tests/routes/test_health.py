"""/healthz and /readyz, on the memory store and on a real Redis that goes away."""

from __future__ import annotations

from typing import Any

from tests.support.redis_server import RedisServer, free_port


async def test_healthz(gateway: Any) -> None:
    resp = await gateway.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_readyz_on_memory(gateway: Any) -> None:
    resp = await gateway.get("/readyz")
    assert (await resp.json()) == {"status": "ok", "store": "memory"}


async def test_readyz_on_redis(
    make_gateway: Any, config: dict[str, Any], redis_server: RedisServer
) -> None:
    config["store"]["url"] = redis_server.url
    gateway = await make_gateway(config)
    resp = await gateway.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["store"] == "redis"


async def test_readyz_fails_when_redis_is_unreachable(
    make_gateway: Any, config: dict[str, Any]
) -> None:
    config["store"]["url"] = f"redis://127.0.0.1:{free_port()}/0"
    gateway = await make_gateway(config)
    resp = await gateway.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unavailable"
