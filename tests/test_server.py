"""The runner: what never reaches a handler still gets the envelope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.server import make_runner
from tests.support.configs import settings_from
from tests.support.redis_server import free_port


@pytest.fixture
async def port(config: dict[str, Any]) -> AsyncIterator[int]:
    settings = settings_from(config)
    runner = make_runner(create_app(settings), settings)
    await runner.setup()
    number = free_port()
    await web.TCPSite(runner, "127.0.0.1", number).start()
    yield number
    await runner.cleanup()


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX: \x01\x02\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    ],
    ids=["method", "content-length", "header-byte", "tls-hello"],
)
async def test_malformed_http_gets_a_json_400(port: int, raw: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert b" 400 " in head.split(b"\r\n")[0]
    assert b"application/json" in head
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
