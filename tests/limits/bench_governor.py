"""Microseconds per Governor.admit / settle on a loopback redis-server (run: python -m ...).

`PYTHONPATH=. .venv/bin/python -m tests.limits.bench_governor [N]`: starts its own redis-server,
runs N admit+settle pairs one at a time and then 64 at once, and prints wall µs per call.
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as redis
import uvloop

from gateway.config import KeySettings, Price, Settings
from gateway.limits import Governor, Subject
from gateway.models import Usage
from tests.support.redis_server import RedisServer

FULL = Subject(KeySettings(id="bench", rpm=10**9, tpm=10**12, max_concurrent=10**6,
                           budget_usd=10.0**9, budget_period="month"),
               ("p1",), "gpt-test", Price(2.0, 0.5, 8.0))
NONE = Subject(KeySettings(id="free"), (), "gpt-test", Price(2.0, 0.5, 8.0))
USAGE = Usage(input_tokens=120, cached_tokens=20, output_tokens=30)


async def one(gov: Governor, who: Subject, n: int) -> tuple[float, float]:
    admit = settle = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        ticket = await gov.admit(who, 150)
        t1 = time.perf_counter()
        await gov.settle(ticket, USAGE, status=200, latency_ms=5.0, provider="p",
                         upstream_model="m")
        settle += time.perf_counter() - t1
        admit += t1 - t0
    return admit / n * 1e6, settle / n * 1e6


async def concurrent(gov: Governor, n: int, width: int = 64) -> float:
    async def worker() -> None:
        for _ in range(n // width):
            ticket = await gov.admit(FULL, 150)
            await gov.settle(ticket, USAGE, status=200, latency_ms=5.0, provider="p",
                             upstream_model="m")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return (time.perf_counter() - t0) / (n // width * width) * 1e6


async def main(url: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    gov = Governor(Settings(), client, "bench:", projects={"p1": {"rpm": 10**9,
                                                                   "budget_usd": 10.0**9}})
    memory = Governor(Settings(), None, "bench:")
    await one(gov, FULL, 200)  # warm up: scripts loaded, connections open
    print(f"admit+settle, {n} sequential calls, µs per call (wall)")
    for name, g, who in (("redis, every limit", gov, FULL), ("redis, no limits", gov, NONE),
                         ("memory, every limit", memory, FULL)):
        admit_us, settle_us = await one(g, who, n)
        print(f"  {name:22} admit {admit_us:7.1f}   settle {settle_us:7.1f}")
    print(f"  redis, 64 concurrent   admit+settle pair {await concurrent(gov, n):7.1f} µs")
    info = await client.info("commandstats")
    for name in ("cmdstat_evalsha",):
        stats = info.get(name, {})
        print(f"  server: {name} usec_per_call {stats.get('usec_per_call')}")
    await client.aclose()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    server = RedisServer()
    server.start()
    try:
        uvloop.run(main(server.url, count))
    finally:
        server.stop()
