"""WebSocket mode against upstreams that refuse, fail or do not stream, and the limits and
state a create meets: each answered as its POST would be, as events on an open socket."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.mockgen import build_response
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, KEY_B
from tests.support.stub import Behaviour, StubUpstream
from tests.support.ws_sdk import response_events

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
CREATE = {"type": "response.create", "model": "gpt-test", "input": "Tell me a story"}


async def test_an_upstream_refusal_is_its_error_event(gateway: Client, stub: StubUpstream) -> None:
    refusal = {
        "error": {
            "message": "Invalid 'input': too long.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "string_above_max_length",
        }
    }
    stub.behaviour = Behaviour(status=400, body=orjson.dumps(refusal))
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        (error,) = await response_events(socket)
        assert error["status"] == 400
        assert error["error"]["code"] == "string_above_max_length"
        assert error["error"]["param"] == "input"
        assert (error["code"], error["param"]) == ("string_above_max_length", "input")
        stub.behaviour = Behaviour()
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"


async def test_an_upstream_fault_is_a_502_error_event(gateway: Client, stub: StubUpstream) -> None:
    stub.behaviour = Behaviour(status=500, body=b"down")
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        (error,) = await response_events(socket)
        assert (error["status"], error["error"]["code"]) == (502, "upstream_error")


async def test_an_upstream_cut_mid_stream_ends_with_response_failed(
    gateway: Client, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(cut_after=5)
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        events = await response_events(socket)
        assert events[-1]["type"] == "response.failed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        stub.behaviour = Behaviour()
        await socket.send_json(CREATE)
        assert (await response_events(socket))[-1]["type"] == "response.completed"


async def test_an_upstream_that_answers_json_still_gives_created_and_completed(
    gateway: Client, stub: StubUpstream
) -> None:
    whole = build_response({"input": "Tell me a story"}, model="gpt-test").response
    stub.behaviour = Behaviour(body=orjson.dumps(whole))
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(CREATE)
        events = await response_events(socket)
    assert [e["type"] for e in events] == ["response.created", "response.completed"]
    assert [e["sequence_number"] for e in events] == [0, 1]
    assert events[-1]["response"]["id"] == whole["id"]


async def test_a_rate_limited_create_carries_the_429_and_its_headers(
    make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    config["auth"]["keys"][1]["rpm"] = 1
    gateway = await make_gateway(config)
    b = {"Authorization": f"Bearer {KEY_B}"}
    async with gateway.ws_connect("/v1/responses", headers=b) as socket:
        await socket.send_json({**CREATE, "model": "mock-model"})
        assert (await response_events(socket))[-1]["type"] == "response.completed"
        await socket.send_json({**CREATE, "model": "mock-model"})
        (error,) = await response_events(socket)
    assert (error["status"], error["error"]["code"]) == (429, "rate_limit_exceeded")
    assert "retry-after" in error["error"]["headers"]


async def test_an_unstored_response_is_chainable_only_on_its_own_socket(gateway: Client) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**CREATE, "store": False})
        first = (await response_events(socket))[-1]["response"]
        assert first["store"] is False
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as other:
        await other.send_json({**CREATE, "previous_response_id": first["id"]})
        (error,) = await response_events(other)
    assert (error["status"], error["error"]["code"]) == (400, "previous_response_not_found")
    assert (await gateway.get(f"/v1/responses/{first['id']}", headers=AUTH)).status == 404


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_mixed_chain_carries_every_turn_on_each_store(
    make_gateway: MakeGateway,
    config: dict[str, Any],
    stub: StubUpstream,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    if store == "redis":
        server = request.getfixturevalue("redis_server")
        config["store"] = {"url": server.url, "prefix": f"ws{id(config)}:"}
    gateway = await make_gateway(config)
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        previous = None
        for turn, kept in enumerate((False, True, False)):
            body = {**CREATE, "input": f"turn {turn}", "store": kept}
            if previous is not None:
                body["previous_response_id"] = previous
            await socket.send_json(body)
            final = (await response_events(socket))[-1]
            assert final["type"] == "response.completed", final
            assert final["response"]["store"] is kept
            previous = final["response"]["id"]
    sent = [m["content"][0]["text"] for m in stub.last.json["input"] if m.get("role") == "user"]
    assert sent == ["turn 0", "turn 1", "turn 2"]


async def test_a_frame_over_the_body_limit_closes_the_socket_with_1009(
    make_gateway: MakeGateway, config: dict[str, Any]
) -> None:
    config["server"]["max_body_bytes"] = 64 * 1024
    gateway = await make_gateway(config)
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**CREATE, "input": "x" * 70 * 1024})
        closed = await socket.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert socket.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("responses_websockets=2026-02-06, assistants=v2", "assistants=v2"),
        ("responses_websockets=2026-02-06", None),
    ],
    ids=["with-another-flag", "alone"],
)
async def test_the_beta_flag_asking_for_the_socket_does_not_travel_upstream(
    gateway: Client, stub: StubUpstream, sent: str, forwarded: str | None
) -> None:
    async with gateway.ws_connect("/v1/responses", headers={**AUTH, "OpenAI-Beta": sent}) as s:
        await s.send_json(CREATE)
        assert (await response_events(s))[-1]["type"] == "response.completed"
    headers = {k.lower(): v for k, v in stub.last.headers.items()}
    assert headers.get("openai-beta") == forwarded
