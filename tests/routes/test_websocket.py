"""WebSocket mode on /responses: auth at the upgrade, error events that keep the socket open,
and every create settled and logged once, however it ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS, DRAINING
from gateway.routes import websocket
from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A
from tests.support.stream_faults import AccessLines, wait_for
from tests.support.stub import Behaviour, StubUpstream
from tests.support.ws_sdk import response_events

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CREATE = {"type": "response.create", "model": "gpt-test", "input": "Tell me a story"}
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def creates(access: AccessLines) -> list[dict[str, Any]]:
    return [line for line in access.lines if line["operation"] == "create_response"]


def records(gateway: Client) -> list[dict[str, str]]:
    return list(gateway.app[DEPS].governor.memory.stream)


@pytest.mark.parametrize(
    "change",
    [{"model": "no-such-model"}, {"temperature": "hot"}, {"model": None}],
    ids=["unknown-model", "schema", "no-model"],
)
async def test_a_refused_create_is_its_http_error_and_the_socket_stays_open(
    gateway: Client, change: dict[str, Any]
) -> None:
    body = {k: v for k, v in {**CREATE, **change}.items() if v is not None}
    post = await gateway.post(
        "/v1/responses", json={k: v for k, v in body.items() if k != "type"}, headers=AUTH
    )
    envelope = (await post.json())["error"]
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(body)
        (error,) = await response_events(socket)
        assert error["type"] == "error"
        assert error["status"] == post.status
        assert error["error"] == envelope
        assert [error[k] for k in ("code", "message", "param")] == [
            envelope[k] for k in ("code", "message", "param")
        ]
        await socket.send_json(CREATE)
        events = await response_events(socket)
        assert events[-1]["type"] == "response.completed"


async def test_an_invalid_json_frame_is_an_error_event(gateway: Client) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_str('{"type": "response.create", ')
        (error,) = await response_events(socket)
        assert (error["status"], error["error"]["code"]) == (400, "invalid_json")
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"


@pytest.mark.parametrize("kind", ["response.steer", "session.update", None])
async def test_a_client_event_the_gateway_cannot_serve_is_named_in_an_error(
    gateway: Client, kind: str | None
) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({"type": kind, "input": "x"})
        (error,) = await response_events(socket)
        assert error["error"]["code"] == "unsupported_event_type"
        assert error["error"]["param"] == "type"
        assert repr(kind) in error["error"]["message"]
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"


async def test_background_is_refused_on_a_socket(gateway: Client) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**CREATE, "background": True})
        (error,) = await response_events(socket)
        assert (error["error"]["code"], error["error"]["param"]) == (
            "unsupported_parameter",
            "background",
        )


async def test_upstream_gets_a_streaming_create_without_the_socket_fields(
    gateway: Client, stub: StubUpstream
) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**CREATE, "stream_id": "lane-1", "stream": False})
        events = await response_events(socket)
    sent = stub.last.json
    assert sent["stream"] is True
    assert "type" not in sent
    assert "stream_id" not in sent
    assert all(event["stream_id"] == "lane-1" for event in events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_the_subprotocol_key_authenticates_and_is_selected(gateway: Client) -> None:
    protocol = f"openai-insecure-api-key.{KEY_A}"
    async with gateway.ws_connect("/v1/responses", protocols=(protocol,)) as socket:
        assert socket.protocol == protocol
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk-wrong-0123456789"},
        {"Sec-WebSocket-Protocol": "openai-insecure-api-key.sk-wrong-0123456789"},
        {},
    ],
    ids=["bad-header", "bad-subprotocol", "missing"],
)
async def test_a_bad_key_is_refused_before_the_upgrade_with_401(
    gateway: Client, headers: dict[str, str]
) -> None:
    resp = await gateway.get("/v1/responses", headers={**HANDSHAKE, **headers})
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.ws_connect("/v1/responses", headers=headers)
    assert refused.value.status == 401


async def test_a_plain_get_is_still_method_not_allowed(gateway: Client) -> None:
    resp = await gateway.get("/v1/responses", headers=AUTH)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_a_disabled_key_closes_its_socket_within_a_second(gateway: Client) -> None:
    made = await gateway.post("/admin/keys", json={"id": "agent"}, headers=ADMIN)
    secret = (await made.json())["key"]
    headers = {"Authorization": f"Bearer {secret}"}
    async with gateway.ws_connect("/v1/responses", headers=headers) as socket:
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"
        patched = await gateway.patch("/admin/keys/agent", json={"disabled": True}, headers=ADMIN)
        assert patched.status == 200
        disabled_at = time.monotonic()
        error = await socket.receive_json(timeout=2)
        closed = await socket.receive(timeout=2)
        elapsed = time.monotonic() - disabled_at
    assert (error["status"], error["error"]["code"]) == (401, "invalid_api_key")
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert elapsed < 1.0


async def test_each_create_is_settled_and_logged_once(gateway: Client, access: AccessLines) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        for body in (CREATE, {**CREATE, "model": "no-such-model"}, CREATE):
            await socket.send_json(body)
            await response_events(socket)
        await wait_for(lambda: len(creates(access)) == 3)
        await gateway.app[DEPS].settler.flush()
        lines, settled = creates(access), records(gateway)
        assert [line["status"] for line in lines] == [200, 404, 200]
        assert len({line["request_id"] for line in lines}) == 3
        # The refused one was never admitted: two usage records, each the upstream's usage.
        assert [(r["status"], r["usage"]) for r in settled] == [("200", "reported")] * 2
        assert all(int(r["input_tokens"]) > 0 for r in settled)


async def test_a_client_closing_mid_stream_is_settled_once(
    make_gateway: MakeGateway, stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await make_gateway()
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        while (await socket.receive_json(timeout=10))["type"] != "response.output_text.delta":
            pass
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    await wait_for(lambda: len(creates(access)) == 1)
    await gateway.app[DEPS].settler.flush()
    (line,) = creates(access)
    assert (line["status"], line["client_gone"]) == (499, True)
    (record,) = records(gateway)
    assert (record["status"], record["usage"]) == ("499", "estimated")
    assert int(record["output_tokens"]) >= 1


async def test_a_key_disabled_mid_response_ends_it_settled_once(
    gateway: Client, stub: StubUpstream, access: AccessLines
) -> None:
    made = await gateway.post("/admin/keys", json={"id": "agent"}, headers=ADMIN)
    headers = {"Authorization": f"Bearer {(await made.json())['key']}"}
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    async with gateway.ws_connect("/v1/responses", headers=headers) as socket:
        await socket.send_json(CREATE)
        while (await socket.receive_json(timeout=10))["type"] != "response.output_text.delta":
            pass
        await gateway.patch("/admin/keys/agent", json={"disabled": True}, headers=ADMIN)
        disabled_at = time.monotonic()
        while (event := await socket.receive_json(timeout=2))["type"] != "error":
            assert event["type"] == "response.output_text.delta"
        closed = await socket.receive(timeout=2)
        elapsed = time.monotonic() - disabled_at
    assert event["error"]["code"] == "invalid_api_key"
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert elapsed < 1.0
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    await wait_for(lambda: len(creates(access)) == 1)
    await gateway.app[DEPS].settler.flush()
    (line,) = creates(access)
    assert line["status"] == 401
    assert "client_gone" not in line  # the gateway ended it, not the client
    (record,) = records(gateway)
    assert (record["status"], record["usage"]) == ("401", "estimated")


async def test_a_draining_replica_closes_idle_sockets_with_1001_and_refuses_new_ones(
    gateway: Client,
) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"
        gateway.app[DRAINING].append(True)  # what SIGTERM does first
        closed = await socket.receive(timeout=2)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
    refused = await gateway.get("/v1/responses", headers={**HANDSHAKE, **AUTH})
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert (await refused.json())["error"]["code"] == "gateway_shutdown"


async def test_a_fault_of_the_gateway_is_a_500_event_and_the_socket_serves_on(
    gateway: Client, access: AccessLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(call: object) -> None:
        raise RuntimeError("a bug")

    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        with monkeypatch.context() as patch:
            patch.setattr(websocket, "forward", broken)
            await socket.send_json(CREATE)
            (error,) = await response_events(socket)
        assert (error["status"], error["error"]["code"]) == (500, "internal_error")
        assert "bug" not in error["error"]["message"]
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"
    await gateway.app[DEPS].settler.flush()
    assert [line["status"] for line in creates(access)] == [500, 200]
    assert [r["status"] for r in records(gateway)] == ["500", "200"]


async def test_a_fault_in_the_key_check_leaves_the_socket_watched(
    gateway: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(authorization: str | None) -> None:
        raise RuntimeError("a bug")

    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        monkeypatch.setattr(gateway.app[DEPS].keys, "authenticate", broken)
        await wait_for(lambda: "checking the keys of open sockets failed" in caplog.text)
        gateway.app[DRAINING].append(True)  # the watch went on: it sees the drain
        closed = await socket.receive(timeout=2)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
