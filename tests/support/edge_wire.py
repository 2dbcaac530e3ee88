"""HTTP on raw sockets: bytes no client library would send, and a gateway served the way
`gateway serve` serves it (GatewayRunner) on a thread, for tests that send many of them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.app import create_app
from gateway.config import Settings
from gateway.server import make_runner
from tests.support.redis_server import free_port


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False  # the server closed the connection after this answer

    def error(self) -> dict[str, Any]:
        """The OpenAI envelope's error object (fails the test when the body is not one)."""
        error = orjson.loads(self.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        return dict(error)


def connect(port: int, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_answer(sock: socket.socket) -> Answer | None:
    """One HTTP answer from `sock`, or None when the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    answer = Answer(status, headers, rest[:length])
    answer.closed = headers.get("connection", "").lower() == "close"
    return answer


def exchange(port: int, data: bytes, timeout: float = 5) -> Answer | None:
    """Sends `data` on a new connection and reads the answer (None: closed without one)."""
    with connect(port, timeout) as sock:
        # The server may answer and close before reading everything.
        with suppress(OSError):
            sock.sendall(data)
        try:
            return read_answer(sock)
        except ConnectionResetError:
            return None


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading and dropping what it sends), or None
    when it was still open after `seconds`."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def request_bytes(
    body: bytes = b"",
    *,
    method: str = "POST",
    path: str = "/v1/responses",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_length: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gateway"]
    lines += [name + b": " + value for name, value in headers or []]
    if content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextmanager
def threaded_gateway(settings: Settings) -> Iterator[int]:
    """The gateway on a free port, served by a thread of its own; yields the port."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        from aiohttp import web

        stop = asyncio.Event()
        runner = make_runner(create_app(settings), settings)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            started.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(20):
        raise RuntimeError("the threaded gateway did not start")
    try:
        yield port
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
