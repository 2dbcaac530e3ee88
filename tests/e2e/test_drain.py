"""SIGTERM drain: /readyz fails at once, streams in flight end with their terminal event."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.streaming.sse import SSEParser
from tests.support.configs import KEY_A
from tests.support.processes import Replica

AUTH = {"Authorization": f"Bearer {KEY_A}"}


def slow_mock(config: dict[str, Any], delay_ms: float, grace_s: float) -> dict[str, Any]:
    config["providers"][1]["token_delay_ms"] = delay_ms
    config["server"].update(shutdown_delay_s=0.5, shutdown_grace_s=grace_s)
    return config


async def read_stream(
    http: aiohttp.ClientSession, url: str, started: asyncio.Event, opened: list[int]
) -> list[dict[str, Any]]:
    body = {
        "model": "mock-model",
        "input": "one two three four five six seven eight nine ten",
        "stream": True,
    }
    async with http.post(f"{url}/v1/responses", json=body, headers=AUTH) as resp:
        assert resp.status == 200
        parser = SSEParser()
        events: list[dict[str, Any]] = []
        async for chunk in resp.content.iter_any():
            if not events:
                opened.append(1)
                if len(opened) == 100:
                    started.set()
            events += [orjson.loads(e.data) for e in parser.feed(chunk)]
        return events


@pytest.mark.parametrize(
    ("delay_ms", "grace_s", "ending"),
    [(60, 20, "response.completed"), (300, 0.5, "response.failed")],
    ids=["within-grace", "past-grace"],
)
async def test_hundred_streams_across_sigterm(
    config: dict[str, Any], tmp_path: Path, delay_ms: float, grace_s: float, ending: str
) -> None:
    replica = Replica(slow_mock(config, delay_ms, grace_s), tmp_path, "drained").start()
    try:
        started, opened = asyncio.Event(), list[int]()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            streams = [
                asyncio.create_task(read_stream(http, replica.url, started, opened))
                for _ in range(100)
            ]
            await asyncio.wait_for(started.wait(), timeout=20)
            replica.signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with http.get(f"{replica.url}/readyz") as ready:
                assert ready.status == 503
            results = await asyncio.wait_for(asyncio.gather(*streams), timeout=60)
        for events in results:
            assert events[-1]["type"] == ending
            numbers = [e["sequence_number"] for e in events]
            assert numbers == list(range(len(numbers)))
        if ending == "response.failed":
            assert results[0][-1]["response"]["error"]["code"] == "gateway_shutdown"
        assert replica.proc is not None
        assert replica.proc.wait(timeout=30) == 0
    finally:
        replica.kill()
