"""Microseconds per Governor.admit / settle on a loopback redis-server.

`PYTHONPATH=. .venv/bin/python -m tests.limits.bench_governor [N]` starts its own redis-server and
times N admit+settle pairs one at a time (median and mean wall µs per call, next to one GET as
the floor of a round trip), then 64 callers at once.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
import uvloop

from gateway.config import KeySettings, Price, ProjectLimits, Settings
from gateway.limits import Governor, Subject
from gateway.limits.usage import Usage
from tests.support.redis_server import RedisServer

FULL = Subject(
    KeySettings(
        id="bench",
        rpm=10**9,
        tpm=10**12,
        max_concurrent=10**6,
        budget_usd=10.0**9,
        budget_period="month",
    ),
    ("p1",),
    "gpt-test",
    Price(2.0, 0.5, 8.0),
)
NONE = Subject(KeySettings(id="free"), (), "gpt-test", Price(2.0, 0.5, 8.0))
USAGE = Usage(input_tokens=120, cached_tokens=20, output_tokens=30)


def show(name: str, samples: list[float]) -> str:
    return (
        f"{name} median {statistics.median(samples) * 1e6:6.1f}"
        f" mean {statistics.fmean(samples) * 1e6:6.1f}"
    )


async def timed(call: Callable[[], Awaitable[object]], into: list[float]) -> object:
    t0 = time.perf_counter()
    result = await call()
    into.append(time.perf_counter() - t0)
    return result


async def pairs(gov: Governor, who: Subject, n: int) -> tuple[list[float], list[float]]:
    admits: list[float] = []
    settles: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        ticket = await gov.admit(who, 150)
        t1 = time.perf_counter()
        await gov.settle(
            ticket, USAGE, status=200, latency_ms=5.0, provider="p", upstream_model="m"
        )
        admits.append(t1 - t0)
        settles.append(time.perf_counter() - t1)
    return admits, settles


async def concurrent(gov: Governor, n: int, width: int = 64) -> float:
    async def worker() -> None:
        for _ in range(n // width):
            ticket = await gov.admit(FULL, 150)
            await gov.settle(
                ticket, USAGE, status=200, latency_ms=5.0, provider="p", upstream_model="m"
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return (time.perf_counter() - t0) / (n // width * width) * 1e6


async def main(url: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    gov = Governor(
        Settings(), client, "bench:", projects={"p1": ProjectLimits(rpm=10**9, budget_usd=10.0**9)}
    )
    memory = Governor(Settings(), None, "bench:")
    await pairs(gov, FULL, 200)  # warm up: scripts loaded, connection open
    gets: list[float] = []
    for _ in range(n):
        await timed(lambda: client.get("bench:nothing"), gets)
    print(f"{n} sequential calls, wall µs per call")
    print(f"  {'one GET (floor)':24} {show('', gets)}")
    for name, g, who in (
        ("redis, every limit", gov, FULL),
        ("redis, no limits", gov, NONE),
        ("memory, every limit", memory, FULL),
    ):
        admits, settles = await pairs(g, who, n)
        print(f"  {name:24} {show('admit', admits)} | {show('settle', settles)}")
    await client.config_resetstat()
    print(f"  redis, 64 callers at once: {await concurrent(gov, n):6.1f} µs per admit+settle")
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    print(f"  redis-server time per script call: {stats.get('usec_per_call')} µs")
    await client.aclose()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    server = RedisServer()
    server.start()
    try:
        uvloop.run(main(server.url, count))
    finally:
        server.stop()
