"""A dedicated redis-server a test may break: killed, restarted empty, paused, full.

Never the session's shared `redis_server`: these faults would break every other test.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from tests.support.redis_server import RedisServer


class FaultyRedis(RedisServer):
    """A redis-server on a fixed port, with the faults a production Redis has."""

    def command(self, *args: Any) -> Any:
        """One command on a fresh connection (the server must be up and running)."""
        with redis.Redis(port=self.port, socket_timeout=5) as client:
            return client.execute_command(*args)

    def kill(self) -> None:
        """SIGKILL: gone at once, connections reset, nothing saved."""
        if self.proc is not None:
            self.resume()
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart_empty(self) -> None:
        """A crash without persistence, or a failover to an empty replica: same port, no data,
        no consumer groups, no scripts."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung or swapping Redis)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def slow(self, seconds: float) -> threading.Thread:
        """`DEBUG SLEEP`: the server answers nothing for `seconds`, from now (join the thread)."""
        sleeper = threading.Thread(target=self.command, args=("DEBUG", "SLEEP", seconds))
        sleeper.start()
        return sleeper

    def fill(self) -> None:
        """Full, as deploy/ runs it: `noeviction`, so every write is refused with OOM."""
        self.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.command("CONFIG", "SET", "maxmemory", "1")

    def unfill(self) -> None:
        self.command("CONFIG", "SET", "maxmemory", "0")

    def keys(self, pattern: str) -> list[bytes]:
        found: list[bytes] = self.command("KEYS", pattern)
        return found

    def groups(self, stream: str) -> list[str]:
        """The names of a stream's consumer groups ([] when the stream is gone)."""
        with redis.Redis(port=self.port, socket_timeout=5, decode_responses=True) as client:
            if not client.exists(stream):
                return []
            found: list[dict[str, Any]] = client.xinfo_groups(stream)
        return [str(group["name"]) for group in found]

    def stop(self) -> None:
        self.resume()  # a stopped process never handles the SIGTERM
        super().stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.05
) -> None:
    """Poll `check` until it is true; TimeoutError after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(every_s)


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus exposition text (0 when the series is absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total
