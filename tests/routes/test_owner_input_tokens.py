"""POST /responses/input_tokens counts the stored context a chained request carries, under the
same ownership as create. Memory and Redis."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A, KEY_B
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
LONG_TURN = " ".join(f"word{i}" for i in range(300))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def gw(store_gateway: Client) -> Client:
    return store_gateway


async def count(gw: Client, key: str = KEY_A, status: int = 200, **body: Any) -> Any:
    resp = await gw.post("/v1/responses/input_tokens", json=body, headers=auth(key))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def long_turn_estimate(gw: Client) -> int:
    # mock-model's provider has no count of its own: the gateway's estimate answers.
    tokens: int = (await count(gw, model="mock-model", input=LONG_TURN))["input_tokens"]
    assert tokens > 300
    return tokens


async def test_a_previous_turn_is_counted(gw: Client) -> None:
    long = await long_turn_estimate(gw)
    resp = await gw.post(
        "/v1/responses", json={"model": "mock-model", "input": LONG_TURN}, headers=auth(KEY_A)
    )
    previous = (await resp.json())["id"]
    counted = await count(gw, model="mock-model", input="and now?", previous_response_id=previous)
    assert counted["input_tokens"] >= long


async def test_a_conversation_is_counted(gw: Client) -> None:
    long = await long_turn_estimate(gw)
    resp = await gw.post(
        "/v1/conversations",
        json={"items": [{"role": "user", "content": LONG_TURN}]},
        headers=auth(KEY_A),
    )
    conv = (await resp.json())["id"]
    counted = await count(gw, model="mock-model", input="and now?", conversation=conv)
    assert counted["input_tokens"] >= long
    as_object = await count(gw, model="mock-model", input="and now?", conversation={"id": conv})
    assert as_object["input_tokens"] == counted["input_tokens"]


async def test_an_upstream_that_counts_gets_the_whole_context(
    gw: Client, stub: StubUpstream
) -> None:
    resp = await gw.post(
        "/v1/responses", json={"model": "gpt-test", "input": LONG_TURN}, headers=auth(KEY_A)
    )
    previous = (await resp.json())["id"]
    counted = await count(gw, model="gpt-test", input="and now?", previous_response_id=previous)
    assert counted["input_tokens"] == 4242  # the stub's own count
    sent = orjson.loads(stub.last.body)
    assert stub.last.path == "/v1/responses/input_tokens"
    assert "previous_response_id" not in sent
    assert "store" not in sent
    texts = [part["text"] for item in sent["input"] for part in item.get("content", [])]
    assert texts[0] == LONG_TURN
    assert texts[-1] == "and now?"


async def test_another_tenants_context_is_not_found(gw: Client) -> None:
    resp = await gw.post(
        "/v1/responses", json={"model": "mock-model", "input": LONG_TURN}, headers=auth(KEY_A)
    )
    previous = (await resp.json())["id"]
    conv = (await (await gw.post("/v1/conversations", json={}, headers=auth(KEY_A))).json())["id"]
    error = await count(
        gw, KEY_B, 400, model="mock-model", input="x", previous_response_id=previous
    )
    assert error["error"]["code"] == "previous_response_not_found"
    assert error["error"]["param"] == "previous_response_id"
    error = await count(gw, KEY_B, 404, model="mock-model", input="x", conversation=conv)
    assert error["error"]["code"] == "conversation_not_found"
    error = await count(gw, KEY_A, 404, model="mock-model", input="x", conversation="conv_none")
    assert error["error"]["param"] == "conversation"
