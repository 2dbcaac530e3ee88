"""POST /responses as JSON: forwarding, headers, mounts and upstream failures."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.support.configs import KEY_A, UPSTREAM_KEY
from tests.support.stub import Behaviour, StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
Client = TestClient[Any, Any]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "input": "Hello there", **fields}


async def post(
    gateway: Client,
    payload: Any,
    path: str = "/v1/responses",
    headers: dict[str, str] | None = None,
) -> Any:
    return await gateway.post(
        path,
        data=orjson.dumps(payload),
        headers={**AUTH, "Content-Type": "application/json", **(headers or {})},
    )


async def test_json_answer_is_the_upstreams(gateway: Client, stub: StubUpstream) -> None:
    resp = await post(gateway, body())
    assert resp.status == 200
    data = await resp.json()
    assert data["object"] == "response"
    assert data["output"][0]["content"][0]["text"]
    assert resp.headers["x-gateway-provider"] == "up"
    assert resp.headers["x-gateway-model"] == "gpt-test"


async def test_unchanged_body_is_forwarded_byte_for_byte(
    gateway: Client, stub: StubUpstream
) -> None:
    raw = b'{"model": "gpt-test",   "input": "keep   my spacing", "store": false}'
    resp = await gateway.post("/v1/responses", data=raw, headers=AUTH)
    assert resp.status == 200
    assert stub.last.body == raw


async def test_upstream_model_name_replaces_the_alias(gateway: Client, stub: StubUpstream) -> None:
    resp = await post(gateway, body(model="cheap"))
    assert resp.status == 200
    assert stub.last.json["model"] == "gpt-cheap-upstream"
    assert stub.last.json["input"] == "Hello there"


async def test_upstream_gets_the_account_key_not_the_clients(
    gateway: Client, stub: StubUpstream
) -> None:
    await post(
        gateway,
        body(),
        headers={
            "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "x-secret-header": "nope",
            "Cookie": "c=1",
        },
    )
    sent = {k.lower(): v for k, v in stub.last.headers.items()}
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEY_A not in str(sent)
    assert sent["traceparent"].startswith("00-aaaa")
    assert "x-secret-header" not in sent
    assert "cookie" not in sent


@pytest.mark.parametrize(
    "mount", ["/v1", "/openai/v1", "/openai", "/api/llm", "/api/v2/llm/proxy/openai/v1"]
)
async def test_every_mount_serves_responses(gateway: Client, mount: str) -> None:
    resp = await post(gateway, body(), path=f"{mount}/responses")
    assert resp.status == 200


async def test_request_id_is_echoed_or_made(gateway: Client) -> None:
    mine = await post(gateway, body(), headers={"x-request-id": "my-id-123"})
    assert mine.headers["x-request-id"] == "my-id-123"
    made = await post(gateway, body())
    assert made.headers["x-request-id"].startswith("req_")


async def test_upstream_client_error_passes_through(gateway: Client, stub: StubUpstream) -> None:
    envelope = {
        "error": {
            "message": "Invalid 'input': bad.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_value",
        }
    }
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(envelope))
    resp = await post(gateway, body())
    assert resp.status == 400
    assert await resp.json() == envelope


async def test_upstream_429_keeps_retry_after(gateway: Client, stub: StubUpstream) -> None:
    envelope = {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    stub.behaviour = Behaviour(
        status=429, body=orjson.dumps(envelope), headers={"retry-after": "3"}
    )
    resp = await post(gateway, body())
    assert resp.status == 429
    assert resp.headers["retry-after"] == "3"


async def test_upstream_plain_text_4xx_becomes_an_envelope(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(status=404, body=b"<html>nope</html>", content_type="text/html")
    resp = await post(gateway, body())
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_is_502(gateway: Client, stub: StubUpstream, status: int) -> None:
    stub.behaviour = Behaviour(status=status, body=b"boom", content_type="text/plain")
    resp = await post(gateway, body())
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_error"


async def test_upstream_refusing_the_gateways_key_is_502(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(status=401, body=b'{"error": {"message": "bad key"}}')
    resp = await post(gateway, body())
    assert resp.status == 502


async def test_unreachable_upstream_is_502(make_gateway: Any, config: dict[str, Any]) -> None:
    config["providers"][0]["base_url"] = "http://127.0.0.1:9/v1"
    gateway = await make_gateway(config)
    resp = await post(gateway, body())
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "upstream_error"
    assert set(error) == {"message", "type", "param", "code"}


async def test_slow_upstream_is_504(
    make_gateway: Any, config: dict[str, Any], stub: StubUpstream
) -> None:
    config["providers"][0]["timeout_s"] = 0.2
    gateway = await make_gateway(config)
    stub.behaviour = Behaviour(delay_s=2)
    resp = await post(gateway, body())
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"


async def test_large_body_is_forwarded_whole(gateway: Client, stub: StubUpstream) -> None:
    image = "data:image/png;base64," + "A" * (3 * 1024 * 1024)
    payload = body(
        store=False,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": image},
                ],
            }
        ],
    )
    raw = orjson.dumps(payload)
    resp = await gateway.post("/v1/responses", data=io.BytesIO(raw), headers=AUTH)
    assert resp.status == 200
    assert stub.last.body == raw
