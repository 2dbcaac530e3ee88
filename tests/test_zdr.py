"""Zero data retention: every request of a `zdr: true` key tells its upstream to keep nothing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from gateway.mockupstream import create_mock_upstream
from tests.conftest import MakeGateway
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
KEY_ZDR = "sk-zdr-team-0123456789"
AUTH = {"Authorization": f"Bearer {KEY_ZDR}"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def zdr_config(config: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    cfg["auth"]["keys"].append({"id": "zdr-team", "key": KEY_ZDR, "project": "p", "zdr": True})
    return cfg


@pytest.fixture
async def zdr_gateway(make_gateway: MakeGateway, zdr_config: dict[str, Any]) -> Client:
    return await make_gateway(zdr_config)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="store-omitted"),
        pytest.param({"store": None}, id="store-null"),
        pytest.param({"store": False}, id="store-false"),
        pytest.param({"stream": True}, id="stream-store-omitted"),
    ],
)
async def test_zdr_request_goes_upstream_with_store_false(
    zdr_gateway: Client, stub: StubUpstream, extra: dict[str, Any]
) -> None:
    resp = await zdr_gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", **extra}, headers=AUTH
    )
    assert resp.status == 200
    await resp.read()
    assert stub.last.json["store"] is False


async def test_zdr_answer_says_not_stored(zdr_gateway: Client, stub: StubUpstream) -> None:
    resp = await zdr_gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi"}, headers=AUTH
    )
    answer = await resp.json()
    missing = await zdr_gateway.get(f"/v1/responses/{answer['id']}", headers=AUTH)
    assert missing.status == 404


async def test_zdr_store_true_is_refused_before_the_upstream(
    zdr_gateway: Client, stub: StubUpstream
) -> None:
    resp = await zdr_gateway.post(
        "/v1/responses", json={"model": "gpt-test", "input": "hi", "store": True}, headers=AUTH
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "store"
    assert stub.requests == []


async def test_zdr_async_job_goes_upstream_with_store_false(
    zdr_gateway: Client, stub: StubUpstream
) -> None:
    resp = await zdr_gateway.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": "hi"},
        headers={**AUTH, "x-bf-async": "true"},
    )
    assert resp.status == 202
    async with asyncio.timeout(10):
        while not stub.requests:
            await asyncio.sleep(0.02)
    assert stub.last.json["store"] is False


async def test_non_zdr_stateless_request_is_forwarded_as_sent(
    gateway: Client, stub: StubUpstream
) -> None:
    raw = orjson.dumps({"model": "gpt-test", "input": "hi", "store": False})
    resp = await gateway.post(
        "/v1/responses",
        data=raw,
        headers={
            "Authorization": "Bearer sk-team-a-0123456789",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 200
    assert stub.last.body == raw


class ChatSeen:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    @web.middleware
    async def record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.bodies.append(orjson.loads(await request.read()))
        return await handler(request)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_zdr_chat_completions_request_carries_store_false(
    aiohttp_server: AiohttpServer,
    make_gateway: MakeGateway,
    zdr_config: dict[str, Any],
    stream: bool,
) -> None:
    seen = ChatSeen()
    upstream_app = create_mock_upstream()
    upstream_app.middlewares.append(seen.record)
    upstream = await aiohttp_server(upstream_app)
    zdr_config["providers"].append(
        {
            "name": "chat",
            "api": "chat_completions",
            "base_url": str(upstream.make_url("/v1")),
            "accounts": [{"name": "main", "api_key_env": "UP_KEY"}],
        }
    )
    zdr_config["models"].append(
        {"name": "chat-model", "targets": [{"provider": "chat", "model": "mock-model"}]}
    )
    gateway = await make_gateway(zdr_config)
    resp = await gateway.post(
        "/v1/responses",
        json={"model": "chat-model", "input": "hi", "stream": stream},
        headers=AUTH,
    )
    assert resp.status == 200
    await resp.read()
    assert seen.bodies[-1]["store"] is False
