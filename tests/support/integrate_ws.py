"""WebSocket mode as an SDK user opens it, for the tests of how it meets the other features."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A


@asynccontextmanager
async def connect(gateway: TestClient[Any, Any]) -> AsyncIterator[Any]:
    """`client.responses.connect()` on the gateway, with the team-a key."""
    async with (
        openai.AsyncOpenAI(
            base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
        ) as client,
        client.responses.connect() as socket,
    ):
        yield socket


async def next_event(socket: Any) -> Any:
    """The next event off the socket, whatever it is."""
    async for event in socket:
        return event
    raise AssertionError("the socket closed")
