"""Prompt-cache writes priced at `price.cache_write`: in the answer's cost header, the usage
record, the budgets and /admin/usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.config import Price, Settings
from gateway.errors import ConfigError
from gateway.keys import DEPS
from gateway.limits import Governor
from gateway.limits.usage import Usage
from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A, settings_from
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
PRICE = Price(input=2.0, cached_input=0.5, output=8.0, cache_write=2.5)
# 1000 input tokens: 200 read from the cache, 300 written to it, 500 plain; 100 output.
USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 300},
    "output_tokens": 100,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1100,
}
EXPECTED_USD = (500 * 2.0 + 200 * 0.5 + 300 * 2.5 + 100 * 8.0) / 1e6  # 0.00265


def answer(usage: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": "resp_cw1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "model": "gpt-test",
            "output": [],
            "usage": usage,
        }
    )


def priced(config: dict[str, Any], price: dict[str, float]) -> dict[str, Any]:
    config["models"][0]["price"] = price
    return config


def test_usage_reads_cache_write_tokens() -> None:
    usage = Usage.from_response({"usage": USAGE})
    assert usage is not None
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (1000, 200, 300)
    assert Usage.from_response({"usage": {"input_tokens": 5}}) == Usage(input_tokens=5)


def test_cache_write_tokens_are_priced_at_cache_write_not_input() -> None:
    gov = Governor(Settings(), None, "x:")
    usage = Usage(input_tokens=1000, cached_tokens=200, output_tokens=100, cache_write_tokens=300)
    assert gov.cost(PRICE, usage) == pytest.approx(EXPECTED_USD)
    # Without a cache_write price, a write costs what any input token costs.
    plain = Price(input=2.0, cached_input=0.5, output=8.0)
    assert gov.cost(plain, usage) == pytest.approx((800 * 2.0 + 200 * 0.5 + 100 * 8.0) / 1e6)
    # Counts that claim more than the input are held to it: never a negative plain part.
    odd = Usage(input_tokens=100, cached_tokens=80, cache_write_tokens=80)
    assert gov.cost(PRICE, odd) == pytest.approx((80 * 0.5 + 20 * 2.5) / 1e6)


def test_config_takes_cache_write_and_refuses_a_negative_one(config: dict[str, Any]) -> None:
    settings = settings_from(priced(config, {"input": 2.0, "cache_write": 2.5}))
    price = settings.models[0].price
    assert price is not None
    assert price.cache_write == 2.5
    with pytest.raises(ConfigError, match="cache_write"):
        settings_from(priced(config, {"input": 2.0, "cache_write": -1}))


async def test_cost_header_and_usage_record_price_cache_writes(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    gateway = await make_gateway(
        priced(config, {"input": 2.0, "cached_input": 0.5, "output": 8.0, "cache_write": 2.5})
    )
    stub.behaviour = Behaviour(body=answer(USAGE))
    resp = await gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", "store": False}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["x-gateway-cost-usd"] == "0.00265000"
    await gateway.app[DEPS].settler.flush()
    (record,) = gateway.app[DEPS].governor.memory.stream
    assert record["cache_write_tokens"] == "300"
    assert record["cached_tokens"] == "200"
    assert record["input_tokens"] == "1000"
    assert float(record["cost_usd"]) == pytest.approx(EXPECTED_USD)
    report = await gateway.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    (row,) = (await report.json())["data"]
    assert row["cost_usd"] == pytest.approx(EXPECTED_USD)
    assert row["input_tokens"] == 1000


async def test_streamed_answer_charges_cache_writes_too(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    gateway = await make_gateway(
        priced(config, {"input": 2.0, "cached_input": 0.5, "output": 8.0, "cache_write": 2.5})
    )
    final = orjson.loads(answer(USAGE))
    stub.behaviour = Behaviour(
        events=[
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": {**final, "usage": None},
            },
            {"type": "response.completed", "sequence_number": 1, "response": final},
        ]
    )
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi", "store": False, "stream": True},
        headers=AUTH,
    )
    assert resp.status == 200
    await resp.read()
    await gateway.app[DEPS].settler.flush()
    (record,) = gateway.app[DEPS].governor.memory.stream
    assert record["cache_write_tokens"] == "300"
    assert float(record["cost_usd"]) == pytest.approx(EXPECTED_USD)
