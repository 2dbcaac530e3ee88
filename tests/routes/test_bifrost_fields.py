"""Bifrost's body fields (`usage.cost`, `extra_fields`) on JSON answers, opted into per key
(`compat: bifrost`, in the file or through the admin API) or per request
(`x-bf-extra-fields: true`); without either, answers are the upstream's, unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.errors import ConfigError
from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A, settings_from
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
OPT_IN = {**AUTH, "x-bf-extra-fields": "true"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ALIAS = "ri.language-model-service..language-model.gpt-test"
USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 300},
    "output_tokens": 100,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1100,
}
UPSTREAM = {
    "id": "resp_bf1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "gpt-test",
    "output": [],
    "usage": USAGE,
}
# gpt-test priced at input 2.0, cached_input 0.5, output 8.0 and cache_write 2.5 per 1M tokens
INPUT_USD = (500 * 2.0 + 200 * 0.5 + 300 * 2.5) / 1e6
OUTPUT_USD = 100 * 8.0 / 1e6


@pytest.fixture
def config(stub: StubUpstream) -> dict[str, Any]:
    from tests.support.configs import base_config

    cfg = base_config(stub.url)
    cfg["models"][0]["price"]["cache_write"] = 2.5
    return cfg


async def create(gateway: Client, headers: dict[str, str], **fields: Any) -> Any:
    body = {"model": ALIAS, "input": "hi", "store": False, **fields}
    resp = await gateway.post("/v1/responses", data=orjson.dumps(body), headers=headers)
    assert resp.status == 200, await resp.text()
    return resp


def assert_bifrost_fields(data: dict[str, Any], request_type: str, latency_ms: float) -> None:
    cost = data["usage"]["cost"]
    assert cost["input_tokens_cost"] == pytest.approx(INPUT_USD)
    assert cost["output_tokens_cost"] == pytest.approx(OUTPUT_USD)
    assert cost["total_cost"] == pytest.approx(INPUT_USD + OUTPUT_USD)
    extra = data["extra_fields"]
    assert extra["request_type"] == request_type
    assert extra["provider"] == "up"
    assert extra["model_requested"] == ALIAS
    assert extra["model_deployment"] == "gpt-test"
    assert isinstance(extra["latency"], int)
    assert 0 <= extra["latency"] <= latency_ms


async def test_without_opt_in_the_answer_is_the_upstreams(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    resp = await create(gateway, AUTH)
    assert await resp.read() == orjson.dumps(UPSTREAM)


async def test_request_header_adds_cost_and_extra_fields(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    resp = await create(gateway, OPT_IN)
    data = await resp.json()
    assert_bifrost_fields(data, "responses", 10_000)
    assert float(resp.headers["x-gateway-cost-usd"]) == pytest.approx(
        data["usage"]["cost"]["total_cost"], abs=1e-8
    )
    # Everything the upstream said is still there.
    assert data["usage"]["input_tokens_details"] == USAGE["input_tokens_details"]
    assert data["id"] == "resp_bf1"


async def test_header_false_changes_nothing(gateway: Client, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    resp = await create(gateway, {**AUTH, "x-bf-extra-fields": "false"})
    assert await resp.read() == orjson.dumps(UPSTREAM)


async def test_key_with_compat_bifrost_always_gets_them(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["auth"]["keys"][0]["compat"] = "bifrost"
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    data = await (await create(gateway, AUTH)).json()
    assert_bifrost_fields(data, "responses", 10_000)


def test_config_refuses_an_unknown_compat(config: dict[str, Any]) -> None:
    config["auth"]["keys"][0]["compat"] = "litellm"
    with pytest.raises(ConfigError, match="compat"):
        settings_from(config)


async def test_admin_api_sets_and_clears_compat(gateway: Client, stub: StubUpstream) -> None:
    made = await gateway.post("/admin/keys", json={"id": "bf", "compat": "bifrost"}, headers=ADMIN)
    assert made.status == 201, await made.text()
    key = await made.json()
    assert key["compat"] == "bifrost"
    headers = {"Authorization": f"Bearer {key['key']}"}
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    data = await (await create(gateway, headers)).json()
    assert data["extra_fields"]["provider"] == "up"

    patched = await gateway.patch("/admin/keys/bf", json={"compat": None}, headers=ADMIN)
    assert (await patched.json())["compat"] is None
    resp = await create(gateway, headers)
    assert await resp.read() == orjson.dumps(UPSTREAM)

    bad = await gateway.patch("/admin/keys/bf", json={"compat": "portkey"}, headers=ADMIN)
    assert bad.status == 400
    assert (await bad.json())["error"]["param"] == "compat"


async def test_stored_response_keeps_what_the_upstream_said(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps({**UPSTREAM, "id": "resp_bf_kept"}))
    answered = await (await create(gateway, OPT_IN, store=True)).json()
    assert "extra_fields" in answered
    assert answered["store"] is True
    kept = await gateway.get("/v1/responses/resp_bf_kept", headers=OPT_IN)
    data = await kept.json()
    assert "extra_fields" not in data
    assert "cost" not in data["usage"]
    assert data["usage"] == USAGE


async def test_compact_answer_carries_them_as_a_compaction(
    gateway: Client, stub: StubUpstream
) -> None:
    compacted = {
        "id": "cmp_bf",
        "object": "response.compaction",
        "created_at": 1,
        "output": [{"id": "cmp_i", "type": "compaction", "encrypted_content": "x"}],
        "usage": USAGE,
    }
    stub.behaviour = Behaviour(body=orjson.dumps(compacted))
    resp = await gateway.post(
        "/v1/responses/compact", json={"model": ALIAS, "input": "hi"}, headers=OPT_IN
    )
    assert resp.status == 200, await resp.text()
    assert_bifrost_fields(await resp.json(), "compaction", 10_000)


async def test_unpriced_model_costs_zero(gateway: Client, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(body=orjson.dumps(UPSTREAM))
    data = await (await create(gateway, OPT_IN, model="cheap")).json()
    assert data["usage"]["cost"] == {
        "input_tokens_cost": 0.0,
        "output_tokens_cost": 0.0,
        "total_cost": 0.0,
    }
    assert data["extra_fields"]["model_requested"] == "cheap"
    assert data["extra_fields"]["model_deployment"] == "gpt-cheap-upstream"


async def test_upstream_refusal_is_unchanged(gateway: Client, stub: StubUpstream) -> None:
    refusal = {
        "error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}
    }
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(refusal))
    resp = await gateway.post(
        "/v1/responses", json={"model": ALIAS, "input": "x", "store": False}, headers=OPT_IN
    )
    assert resp.status == 400
    assert "extra_fields" not in await resp.json()
