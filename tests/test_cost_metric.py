"""gateway_cost_usd_total moves by the cost of each settled request of a priced model."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS
from tests.support.configs import KEY_A

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
# models[gpt-test].price in tests/support/configs.py, USD per 1M tokens.
INPUT, CACHED_INPUT, OUTPUT = 2.0, 0.5, 8.0


def cost_total(text: str, model: str) -> float:
    prefix = f'gateway_cost_usd_total{{model="{model}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def metrics_text(gateway: Client) -> str:
    resp = await gateway.get("/metrics")
    assert resp.status == 200
    text: str = await resp.text()
    return text


async def cost_after(gateway: Client, model: str, before: float) -> float:
    """The counter once it has moved (settlement runs after the answer went out)."""
    async with asyncio.timeout(5):
        while True:
            now = cost_total(await metrics_text(gateway), model)
            if now != before:
                return now
            await asyncio.sleep(0.01)


def priced(usage: dict[str, Any]) -> float:
    cached = usage.get("input_tokens_details", {}).get("cached_tokens", 0)
    usd: float = (
        (usage["input_tokens"] - cached) * INPUT
        + cached * CACHED_INPUT
        + usage["output_tokens"] * OUTPUT
    ) / 1_000_000
    return usd


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_cost_metric_moves_by_the_requests_cost(gateway: Client, stream: bool) -> None:
    before = cost_total(await metrics_text(gateway), "gpt-test")
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "what does this cost?", "stream": stream},
        headers=AUTH,
    )
    assert resp.status == 200
    if stream:
        text = await resp.text()
        final = [line for line in text.splitlines() if '"response.completed"' in line]
        usage = orjson.loads(final[-1].removeprefix("data: "))["response"]["usage"]
    else:
        answer = await resp.json()
        usage = answer["usage"]
        assert float(resp.headers["x-gateway-cost-usd"]) == pytest.approx(priced(usage), abs=1e-8)
    expected = priced(usage)
    assert expected > 0
    after = await cost_after(gateway, "gpt-test", before)
    assert after - before == pytest.approx(expected, rel=1e-9)


async def test_unpriced_model_adds_no_cost(gateway: Client) -> None:
    resp = await gateway.post(
        "/v1/responses", json={"model": "cheap", "input": "free?"}, headers=AUTH
    )
    assert resp.status == 200
    # A JSON answer goes out after its ticket was handed to the settler.
    await gateway.app[DEPS].settler.flush()
    assert cost_total(await metrics_text(gateway), "cheap") == 0.0
