"""Fixtures of the fault suites: scripted upstreams, and a key whose lease shows a request
left unsettled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.stream_faults import ScriptedUpstream


@pytest.fixture
async def scripted() -> AsyncIterator[list[ScriptedUpstream]]:
    made: list[ScriptedUpstream] = []
    yield made
    for upstream in made:
        await upstream.close()


@pytest.fixture
def limited(config: dict[str, Any]) -> dict[str, Any]:
    """The key holds a concurrency lease per request, so one left unsettled shows."""
    config["auth"]["keys"][0]["max_concurrent"] = 1
    return config
