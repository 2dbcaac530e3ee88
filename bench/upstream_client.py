"""CPU per upstream request: aiohttp's ClientSession against gateway.upstream_http's Client.

Starts the benchmark's fixed-answer upstream (bench/upstream.py, a bare uvloop protocol) in
its own process, then sends the same POSTs from this uvloop process through each client, a
fixed number at once, and prints this process's CPU time per request (the upstream's is not
counted), JSON answers and streams, in alternating rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import aiohttp
import orjson
import uvloop

HERE: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gateway.upstream_http import Client  # noqa: E402

REQUEST: Final = {
    "model": "gpt-4.1-mini",
    "instructions": "You are a support assistant. Answer briefly.",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 700}]}],
    "store": False,
}
BODIES: Final = {
    "json": orjson.dumps(REQUEST),
    "stream": orjson.dumps({**REQUEST, "stream": True}),
}
HEADERS: Final = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": "responses-gateway/0.1",
    "Authorization": "Bearer sk-bench",
}

Send = Callable[[bytes], Awaitable[int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the upstream did not start")


def aiohttp_sender(session: aiohttp.ClientSession, url: str) -> Send:
    async def send(body: bytes) -> int:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            if resp.content_type == "text/event-stream":
                return sum([len(chunk) async for chunk in resp.content.iter_any()])
            return len(await resp.read())

    return send


def client_sender(client: Client, url: str) -> Send:
    async def send(body: bytes) -> int:
        resp = await client.post(url, body, HEADERS)
        if resp.content_type == "text/event-stream":
            return sum([len(chunk) async for chunk in resp])
        return len(await resp.read())

    return send


async def measure(send: Send, body: bytes, requests: int, concurrency: int) -> float:
    """CPU microseconds of this process per request, `concurrency` requests at a time."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if not await send(body):
                raise SystemExit("an empty answer")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1e6


async def run(url: str, rounds: int, requests: int, concurrency: int) -> dict[str, list[float]]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
    results: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(connect_timeout=10, read_timeout=600)
        senders = {
            "ClientSession": aiohttp_sender(session, url),
            "upstream_http": client_sender(client, url),
        }
        try:
            for send in senders.values():  # warm up: connections made, code paths hot
                for body in BODIES.values():
                    await measure(send, body, concurrency * 4, concurrency)
            for _ in range(rounds):
                for scenario, body in BODIES.items():
                    for name, send in senders.items():
                        cpu = await measure(send, body, requests, concurrency)
                        results.setdefault(f"{scenario} {name}", []).append(cpu)
        finally:
            await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000, help="per client, round, scenario")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), "--port", str(port), "--server", "raw"]
    )
    try:
        wait_listening(port)
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        url = f"http://127.0.0.1:{port}/v1/responses"
        results = uvloop.run(run(url, args.rounds, args.requests, args.concurrency))
    finally:
        upstream.terminate()
        upstream.wait()
    print(f"CPU per request (us), median of {args.rounds} rounds, {args.concurrency} at once:")
    for scenario in BODIES:
        base = statistics.median(results[f"{scenario} ClientSession"])
        ours = statistics.median(results[f"{scenario} upstream_http"])
        print(
            f"  {scenario:6}  ClientSession {base:7.1f}   upstream_http {ours:7.1f}"
            f"   ratio {ours / base:.2f}"
        )


if __name__ == "__main__":
    main()
