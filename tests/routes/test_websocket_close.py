"""A socket's own access line says 101 however its client ends it: a close frame, or the
connection simply dropped (as a CLI does when it exits). Its creates keep their own lines."""

from __future__ import annotations

import asyncio
import socket as sockets
from typing import Any

import aiohttp
import pytest

from gateway.keys import DEPS
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stream_faults import AccessLines, wait_for
from tests.support.stub import Behaviour, StubUpstream
from tests.support.ws_sdk import TERMINAL

AUTH = {"Authorization": f"Bearer {KEY_A}"}
CREATE = {"type": "response.create", "model": "mock-model", "input": "Tell me a story"}


def lines_of(access: AccessLines, operation: str) -> list[dict[str, Any]]:
    return [line for line in access.lines if line["operation"] == operation]


async def one_response(socket: aiohttp.ClientWebSocketResponse) -> None:
    await socket.send_json(CREATE)
    while (await socket.receive_json(timeout=10))["type"] not in TERMINAL:
        pass


@pytest.mark.parametrize("ending", ["close-frame", "dropped"])
async def test_the_socket_line_says_101_however_the_client_ends_it(
    make_gateway: MakeGateway, access: AccessLines, ending: str
) -> None:
    # As `gateway serve` runs it: aiohttp cancels a handler whose client went away.
    gateway = await make_gateway(server_kwargs={"handler_cancellation": True})
    socket = await gateway.ws_connect("/v1/responses", headers=AUTH)
    await one_response(socket)
    if ending == "close-frame":
        await socket.close()
    else:
        raw: sockets.socket = socket.get_extra_info("socket")
        raw.shutdown(sockets.SHUT_RDWR)  # no close frame: the connection just ends
    await wait_for(lambda: bool(lines_of(access, "responses_socket")))
    (line,) = lines_of(access, "responses_socket")
    assert line["status"] == 101
    assert "client_gone" not in line
    (create,) = lines_of(access, "create_response")
    assert create["status"] == 200
    await socket.close()


async def test_a_connection_dropped_mid_response_is_101_and_its_create_499(
    make_gateway: MakeGateway, stub: StubUpstream, access: AccessLines
) -> None:
    gateway = await make_gateway(server_kwargs={"handler_cancellation": True})
    stub.behaviour = Behaviour(stall_after=7)  # three deltas out, then nothing
    socket = await gateway.ws_connect("/v1/responses", headers=AUTH)
    await socket.send_json({**CREATE, "model": "gpt-test"})
    while (await socket.receive_json(timeout=10))["type"] != "response.output_text.delta":
        pass
    raw: sockets.socket = socket.get_extra_info("socket")
    raw.shutdown(sockets.SHUT_RDWR)
    await asyncio.wait_for(stub.cancelled.wait(), 5)
    await wait_for(lambda: len(access.lines) == 2)
    await gateway.app[DEPS].settler.flush()
    (line,) = lines_of(access, "responses_socket")
    assert line["status"] == 101
    (create,) = lines_of(access, "create_response")
    assert (create["status"], create["client_gone"]) == (499, True)
    (record,) = gateway.app[DEPS].governor.memory.stream
    assert (record["status"], record["usage"]) == ("499", "estimated")
    await socket.close()
