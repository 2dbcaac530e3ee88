"""Upstreams and clients that fail at a chosen moment: raw sockets, so the moment is exact."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.streaming.sse import encode_event

# What a scripted upstream does, step by step: bytes are sent, the rest are actions.
RESET = "reset"  # close with a TCP RST, mid-whatever
STALL = "stall"  # send nothing more, keep the connection open
Step = bytes | str

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)


def frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(orjson.dumps(e), e["type"]) for e in events)


def reset(writer: asyncio.StreamWriter) -> None:
    """Hang up with a RST instead of a FIN (linger 0), as a crashed peer or proxy does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ScriptedUpstream:
    """A raw HTTP/1.1 server: reads one request per connection, then plays `script`."""

    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.received = asyncio.Event()
        self.hung_up = asyncio.Event()  # the gateway closed a connection the script held open
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> ScriptedUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            self.requests.append(head + await reader.readexactly(length))
            self.received.set()
            for step in self.script:
                if step == RESET:
                    reset(writer)
                    return
                if step == STALL:
                    await reader.read()  # until the gateway hangs up
                    self.hung_up.set()
                    return
                assert isinstance(step, bytes)
                writer.write(step)
                await writer.drain()
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hung_up.set()
        finally:
            self._open.discard(writer)
            writer.close()


class RawClient:
    """A client on a raw socket that reads a stream until a marker and then hangs up."""

    def __init__(self, base_url: str) -> None:
        host_port = base_url.removeprefix("http://").rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.read = b""

    async def leave(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
        *,
        after: bytes | None = None,
        when: Callable[[], Awaitable[object]] | None = None,
        timeout_s: float = 10.0,
    ) -> bytes:
        """Send the request; hang up (RST) once `after` has been read, or once `when` returns
        (before anything was read); answers what was read."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        raw = orjson.dumps(body) if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(raw)}"]
        writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + raw)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            if when is not None:
                await when()
            else:
                assert after is not None
                while after not in self.read:
                    got = await reader.read(65536)
                    if not got:
                        raise AssertionError(f"the stream ended before {after!r}: {self.read!r}")
                    self.read += got
        reset(writer)
        return self.read


def clients_gone() -> float:
    return REGISTRY.get_sample_value("gateway_clients_gone_total") or 0.0


class AccessLines(logging.Handler):
    """The access log's records, as the dicts a JSON line holds."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(dict(record.__dict__))

    def of(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("request_id") == request_id]


MakeGateway = Callable[..., Awaitable[TestClient[Any, Any]]]


async def cancelling_gateway(
    make_gateway: MakeGateway, config: dict[str, Any] | None = None
) -> TestClient[Any, Any]:
    """The app as `gateway serve` runs it: a client that leaves cancels its handler."""
    return await make_gateway(config, server_kwargs={"handler_cancellation": True})


async def on_scripted(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    scripted: list[ScriptedUpstream],
    script: list[bytes | str],
) -> tuple[TestClient[Any, Any], ScriptedUpstream]:
    """A cancelling gateway in front of a scripted upstream (closed by the `scripted`
    fixture)."""
    upstream = await ScriptedUpstream(script).start()
    scripted.append(upstream)
    config["providers"][0]["base_url"] = f"{upstream.url}/v1"
    return await cancelling_gateway(make_gateway, config), upstream


@contextmanager
def access_log() -> Iterator[AccessLines]:
    """The access log's lines while the block runs (the log is on, at INFO, meanwhile)."""
    logger = logging.getLogger("gateway.access")
    handler = AccessLines()
    was_disabled, was_level = logger.disabled, logger.level
    logger.disabled = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.disabled, logger.level = was_disabled, was_level


async def wait_for(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Poll `check` until it is true (the gateway finishes a request after its client left)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the gateway")
        await asyncio.sleep(0.01)
