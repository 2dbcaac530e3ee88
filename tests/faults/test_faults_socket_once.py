"""Each `response.create` on a WebSocket is one request: logged (one access line), counted (one
move of the request counter) and settled (its lease given back, one usage record) exactly
once, however it ends: streamed whole, failed upstream, left by its client, refused, ended by
its key being disabled, or finished by a replica told to stop."""

from __future__ import annotations

import asyncio
import signal
import struct
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.mockgen import build_response
from tests.conftest import MakeGateway
from tests.support.configs import ADMIN_KEY, KEY_A
from tests.support.once import Client, Ledger
from tests.support.processes import Replica
from tests.support.redis_server import RedisServer, usage_records
from tests.support.stream_faults import (
    RESET,
    SSE_HEAD,
    STALL,
    AccessLines,
    ScriptedUpstream,
    cancelling_gateway,
    clients_gone,
    frames,
    on_scripted,
    reset,
    wait_for,
)
from tests.support.stub import Behaviour, StubUpstream
from tests.support.ws_sdk import response_events

AUTH = {"Authorization": f"Bearer {KEY_A}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CREATE = {"type": "response.create", "model": "gpt-test", "input": "Tell me a story"}
CARD = "4111 1111 1111 1111"
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def one_create(gateway: Client, body: dict[str, Any] = CREATE) -> list[dict[str, Any]]:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(body)
        return await response_events(socket)


def client_frame(data: bytes) -> bytes:
    """One masked text frame, as a client sends it (RFC 6455 5.2)."""
    mask = b"\x01\x02\x03\x04"
    length = len(data)
    size = bytes([0x80 | length]) if length < 126 else b"\xfe" + struct.pack("!H", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b"\x81" + size + mask + masked


def socket_lines(access: AccessLines) -> list[dict[str, Any]]:
    return [line for line in access.lines if line["operation"] == "responses_socket"]


def canned() -> list[dict[str, Any]]:
    return build_response({"input": "Tell me a story"}, model="gpt-test").events()


# -- it ends on its own ---------------------------------------------------------------------


async def test_a_create_streamed_to_completed_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, limited: dict[str, Any], access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, limited)
    ledger = Ledger(gateway, access, "create_response")
    events = await one_create(gateway)
    assert events[-1]["type"] == "response.completed"
    (line,) = await ledger.ended()
    assert line["status"] == 200
    assert ledger.counted() == {"2xx": 1}
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == ("200", "reported")
    assert ledger.held() == 0


@pytest.mark.parametrize(
    ("script", "status", "ending", "usage"),
    [
        (
            [b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\ndown"],
            502,
            "error",
            "none",
        ),
        ([RESET], 502, "error", "none"),
        ([STALL], 504, "error", "none"),
        ([SSE_HEAD, frames(canned()[:6]), RESET], 200, "response.failed", "estimated"),
        ([SSE_HEAD, frames(canned()[:6]), STALL], 200, "response.failed", "estimated"),
    ],
    ids=[
        "5xx",
        "reset-before-headers",
        "stall-before-headers",
        "reset-mid-stream",
        "stall-mid-stream",
    ],
)
async def test_a_create_the_upstream_fails_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway,
    limited: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
    script: list[bytes | str],
    status: int,
    ending: str,
    usage: str,
) -> None:
    limited["providers"][0]["timeout_s"] = 0.3
    gateway, _ = await on_scripted(make_gateway, limited, scripted, script)
    ledger = Ledger(gateway, access, "create_response")
    events = await one_create(gateway)
    assert events[-1]["type"] == ending
    if ending == "error":
        assert events[-1]["status"] == status
    (line,) = await ledger.ended()
    assert line["status"] == status
    assert ledger.counted() == {f"{status // 100}xx": 1}
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == (str(status), usage)
    assert ledger.held() == 0


# -- its client leaves ----------------------------------------------------------------------


async def assert_left_once(ledger: Ledger, access: AccessLines, gone: float) -> None:
    """A create whose client left mid-stream: one 499 line, counted and settled once."""
    (line,) = await ledger.ended()
    assert (line["status"], line["client_gone"]) == (499, True)
    assert ledger.counted() == {"4xx": 1}
    # One client left once: the connection's own line is the 101 it was answered, as for a
    # socket closed between creates, and it does not count the departure again.
    await wait_for(lambda: len(socket_lines(access)) == 1)
    (connection,) = socket_lines(access)
    assert connection["status"] == 101
    assert "client_gone" not in connection
    assert clients_gone() == gone + 1
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == ("499", "estimated")
    assert ledger.held() == 0


async def test_a_socket_closed_mid_stream_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, limited: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, limited)
    ledger = Ledger(gateway, access, "create_response")
    gone = clients_gone()
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        while (await socket.receive_json(timeout=10))["type"] != "response.output_text.delta":
            pass
        assert ledger.held() == 1
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    await assert_left_once(ledger, access, gone)


async def test_a_socket_dropped_without_a_close_mid_stream_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, limited: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, limited)
    ledger = Ledger(gateway, access, "create_response")
    gone = clients_gone()
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    head = [
        "GET /v1/responses HTTP/1.1",
        f"Host: {gateway.host}:{gateway.port}",
        *(f"{k}: {v}" for k, v in {**HANDSHAKE, **AUTH}.items()),
    ]
    writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + client_frame(orjson.dumps(CREATE)))
    read = b""
    async with asyncio.timeout(10):
        while b"output_text.delta" not in read:
            got = await reader.read(65536)
            assert got, read
            read += got
    assert read.startswith(b"HTTP/1.1 101")
    reset(writer)  # gone: no close frame, a TCP RST
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    await assert_left_once(ledger, access, gone)


# -- refused before the upstream ------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"temperature": "hot"}, 400, "invalid_type"),
        ({"model": "no-such-model"}, 404, "model_not_found"),
        ({"input": f"pay with {CARD}"}, 400, "content_blocked"),
    ],
    ids=["bad-body", "unknown-model", "guardrail-block"],
)
async def test_a_refused_create_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway,
    limited: dict[str, Any],
    stub: StubUpstream,
    access: AccessLines,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    limited["guardrails"] = [{"name": "cards", "detect": ["credit_card"], "action": "block"}]
    gateway = await cancelling_gateway(make_gateway, limited)
    ledger = Ledger(gateway, access, "create_response")
    (error,) = await one_create(gateway, {**CREATE, **change})
    assert (error["status"], error["error"]["code"]) == (status, code)
    assert stub.requests == []
    (line,) = await ledger.ended()
    assert line["status"] == status
    assert ledger.counted() == {"4xx": 1}
    # Settled once if it was admitted (a blocked input is scanned after admission), else never.
    assert [r["status"] for r in ledger.records()] == (
        [str(status)] if code == "content_blocked" else []
    )
    assert ledger.held() == 0


async def test_a_create_over_the_keys_rpm_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    config["auth"]["keys"][0]["rpm"] = 1
    gateway = await cancelling_gateway(make_gateway, config)
    ledger = Ledger(gateway, access, "create_response")
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        for _ in range(2):
            await socket.send_json(CREATE)
            events = await response_events(socket)
    assert (events[-1]["status"], events[-1]["error"]["type"]) == (429, "requests")
    assert len(stub.requests) == 1
    lines = await ledger.ended(2)
    assert [line["status"] for line in lines] == [200, 429]
    assert ledger.counted() == {"2xx": 1, "4xx": 1}
    assert [r["status"] for r in ledger.records()] == ["200"]  # the refused one was never admitted


# -- the gateway ends it --------------------------------------------------------------------


async def test_a_create_whose_key_is_disabled_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, None)
    made = await gateway.post(
        "/admin/keys", json={"id": "agent", "max_concurrent": 1}, headers=ADMIN
    )
    assert made.status in (200, 201), await made.text()
    headers = {"Authorization": f"Bearer {(await made.json())['key']}"}
    ledger = Ledger(gateway, access, "create_response")
    stub.behaviour = Behaviour(stall_after=7)
    async with gateway.ws_connect("/v1/responses", headers=headers) as socket:
        await socket.send_json(CREATE)
        while (await socket.receive_json(timeout=10))["type"] != "response.output_text.delta":
            pass
        assert ledger.held() == 1  # the key's lease, given back when the create is settled
        await gateway.patch("/admin/keys/agent", json={"disabled": True}, headers=ADMIN)
        while (await socket.receive_json(timeout=2))["type"] != "error":
            pass
        assert (await socket.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE
    (line,) = await ledger.ended()
    assert line["status"] == 401
    assert ledger.counted() == {"4xx": 1}
    await wait_for(lambda: len(socket_lines(access)) == 1)
    assert socket_lines(access)[0]["status"] == 101
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == ("401", "estimated")
    assert ledger.held() == 0


@pytest.mark.parametrize(
    ("grace_s", "ending", "usage"),
    [(20, "response.completed", "reported"), (0.2, "response.failed", "estimated")],
    ids=["within-grace", "past-grace"],
)
async def test_a_create_in_flight_at_sigterm_is_logged_and_settled_once(
    config: dict[str, Any],
    redis_server: RedisServer,
    tmp_path: Path,
    grace_s: float,
    ending: str,
    usage: str,
) -> None:
    """A `gateway serve` process told to stop: the response in flight ends (whole within the
    grace, else failed), is logged and settled once (its line is written by the call that
    counts it), then the socket closes with 1001."""
    prefix = f"{tmp_path.name}:"
    config["store"] = {"url": redis_server.url, "prefix": prefix}
    config["server"].update(access_log=True, shutdown_delay_s=0.2, shutdown_grace_s=grace_s)
    config["providers"][1]["token_delay_ms"] = 50
    replica = Replica(config, tmp_path, "ws-sigterm").start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{replica.url}/v1/responses", headers=AUTH) as socket,
        ):
            await socket.send_json({**CREATE, "model": "mock-model", "input": "word " * 12})
            event = await socket.receive_json(timeout=10)
            assert event["type"] == "response.created"
            replica.signal(signal.SIGTERM)
            events = [event, *await response_events(socket)]
            closed = await socket.receive(timeout=10)
        assert events[-1]["type"] == ending
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert socket.close_code == aiohttp.WSCloseCode.GOING_AWAY
        assert replica.proc is not None
        assert replica.proc.wait(timeout=30) == 0
        lines = replica.access_lines()
        (line,) = [line for line in lines if line["operation"] == "create_response"]
        assert line["status"] == 200
        (connection,) = [line for line in lines if line["operation"] == "responses_socket"]
        assert connection["status"] == 101
        (record,) = await usage_records(redis_server, prefix)
        assert (record["status"], record["usage"]) == ("200", usage)
    finally:
        replica.kill()
