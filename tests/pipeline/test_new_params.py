"""The newest create parameters reach a Responses upstream exactly as the client sent them:
JSON and stream, with and without the gateway keeping state, and on /responses/compact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A
from tests.support.new_params import NEW_PARAMS, SERVICE_TIERS
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}


async def create(gateway: Client, body: dict[str, Any]) -> Any:
    resp = await gateway.post("/v1/responses", data=orjson.dumps(body), headers=AUTH)
    text = await resp.text()
    assert resp.status == 200, text
    return resp


def sent(stub: StubUpstream) -> dict[str, Any]:
    assert stub.last.path == "/v1/responses"
    got: dict[str, Any] = stub.last.json
    return got


@pytest.mark.parametrize("tier", SERVICE_TIERS)
async def test_every_service_tier_passes(gateway: Client, stub: StubUpstream, tier: str) -> None:
    raw = orjson.dumps({"model": "gpt-test", "input": "hi", "store": False, "service_tier": tier})
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert stub.last.body == raw  # byte for byte: nothing to rewrite


async def test_new_params_pass_unchanged_when_nothing_is_kept(
    gateway: Client, stub: StubUpstream
) -> None:
    body = {"model": "gpt-test", "input": "hi", "store": False, **NEW_PARAMS}
    raw = orjson.dumps(body)
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert stub.last.body == raw


async def test_new_params_pass_when_the_gateway_keeps_the_response(
    gateway: Client, stub: StubUpstream
) -> None:
    """A kept response rewrites the body (store: false upstream): the new fields survive."""
    await create(gateway, {"model": "gpt-test", "input": "hi", **NEW_PARAMS})
    upstream = sent(stub)
    assert upstream["store"] is False
    for name, value in NEW_PARAMS.items():
        assert upstream[name] == value, name


async def test_new_params_pass_on_a_chained_turn(gateway: Client, stub: StubUpstream) -> None:
    first = await (await create(gateway, {"model": "gpt-test", "input": "hi"})).json()
    await create(
        gateway,
        {"model": "gpt-test", "input": "again", "previous_response_id": first["id"], **NEW_PARAMS},
    )
    upstream = sent(stub)
    assert "previous_response_id" not in upstream
    for name, value in NEW_PARAMS.items():
        assert upstream[name] == value, name


async def test_stream_options_include_obfuscation_passes_on_a_stream(
    gateway: Client, stub: StubUpstream
) -> None:
    body = {
        "model": "gpt-test",
        "input": "hi",
        "store": False,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        **NEW_PARAMS,
    }
    raw = orjson.dumps(body)
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200
    assert b"response.completed" in await resp.read()
    assert stub.last.body == raw


COMPACT_PARAMS: dict[str, Any] = {
    "prompt_cache_key": "tenant-42/agent-7",
    "prompt_cache_options": {"mode": "implicit", "ttl": "30m"},
    "prompt_cache_retention": "in_memory",
    "safety_identifier": "user-1234",
    "image": {"context_compression": "disabled"},
}


@pytest.mark.parametrize("tier", ["auto", "default", "fast", "flex", "priority"])
async def test_new_params_pass_unchanged_on_compact(
    gateway: Client, stub: StubUpstream, tier: str
) -> None:
    body = {"model": "gpt-test", "input": "hi", "service_tier": tier, **COMPACT_PARAMS}
    raw = orjson.dumps(body)
    resp = await gateway.post("/v1/responses/compact", data=raw, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert stub.last.path == "/v1/responses/compact"
    assert stub.last.body == raw


async def test_new_params_pass_on_a_chained_compact(gateway: Client, stub: StubUpstream) -> None:
    first = await (await create(gateway, {"model": "gpt-test", "input": "hi"})).json()
    body = {"model": "gpt-test", "previous_response_id": first["id"], **COMPACT_PARAMS}
    resp = await gateway.post("/v1/responses/compact", data=orjson.dumps(body), headers=AUTH)
    assert resp.status == 200, await resp.text()
    upstream = stub.last.json
    for name, value in COMPACT_PARAMS.items():
        assert upstream[name] == value, name
