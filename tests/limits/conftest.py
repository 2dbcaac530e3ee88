"""Fixtures for the limits tests: Governors on memory (fake clock) or on the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.limits.limits_helpers import Harness
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def harness(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Harness]:
    made = Harness(request.param, redis_server.url)
    yield made
    await made.close()


@pytest.fixture
async def redis_harness(redis_server: RedisServer) -> AsyncIterator[Harness]:
    made = Harness("redis", redis_server.url)
    yield made
    await made.close()
