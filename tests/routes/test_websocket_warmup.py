"""`generate: false` over WebSocket (Codex warms every session up with one): checked and
admitted like any create, answered at once with an empty completed Response, never sent
upstream, settled at no tokens, and chainable on the same socket."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS
from tests.support.configs import KEY_A
from tests.support.stream_faults import AccessLines, wait_for
from tests.support.stub import StubUpstream
from tests.support.ws_sdk import response_events

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
INSTRUCTIONS = "You are a coding agent."
TOOLS = [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]
WARMUP = {
    "type": "response.create",
    "model": "gpt-test",
    "instructions": INSTRUCTIONS,
    "tools": TOOLS,
    "input": [{"type": "message", "role": "user", "content": "List the files."}],
    "store": False,
    "generate": False,
}


async def test_a_warmup_is_answered_empty_and_the_next_create_chains_on_it(
    gateway: Client, stub: StubUpstream, access: AccessLines
) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json(WARMUP)
        warm = await response_events(socket)
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        response = warm[-1]["response"]
        assert (response["status"], response["output"], response["model"]) == (
            "completed",
            [],
            "gpt-test",
        )
        assert response["usage"]["total_tokens"] == 0
        assert (response["instructions"], response["tools"]) == (INSTRUCTIONS, TOOLS)
        assert stub.requests == []  # nothing went upstream

        turn = {
            "type": "response.create",
            "model": "gpt-test",
            "instructions": INSTRUCTIONS,
            "tools": TOOLS,
            "previous_response_id": response["id"],
            "input": [],
            "store": False,
        }
        await socket.send_json(turn)
        answered = await response_events(socket)
        assert answered[-1]["type"] == "response.completed"
    (sent,) = stub.requests
    # The warm-up's input is the context the turn continues from.
    texts = [part["text"] for item in sent.json["input"] for part in item["content"]]
    assert texts == ["List the files."]
    assert "generate" not in sent.json
    await wait_for(lambda: len(access.lines) == 3)  # two creates and the socket
    lines = [line for line in access.lines if line["operation"] == "create_response"]
    assert [line["status"] for line in lines] == [200, 200]
    await gateway.app[DEPS].settler.flush()
    warm_record, turn_record = gateway.app[DEPS].governor.memory.stream
    assert (warm_record["status"], warm_record["input_tokens"]) == ("200", "0")
    assert warm_record["output_tokens"] == "0"
    assert turn_record["status"] == "200"


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"model": "no-such-model"}, "model_not_found", "model"),
        ({"generate": "no"}, "invalid_type", "generate"),
        ({"temperature": "hot"}, None, "temperature"),
    ],
    ids=["unknown-model", "generate-not-bool", "schema"],
)
async def test_a_warmup_is_checked_like_any_create(
    gateway: Client,
    stub: StubUpstream,
    change: dict[str, Any],
    code: str | None,
    param: str,
) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**WARMUP, **change})
        (error,) = await response_events(socket)
        assert error["type"] == "error"
        assert error["error"]["param"] == param
        if code is not None:
            assert error["error"]["code"] == code
        await socket.send_json(WARMUP)  # the socket stays open for the next create
        assert (await response_events(socket))[-1]["type"] == "response.completed"
    assert stub.requests == []


async def test_a_warmup_is_kept_on_its_socket_only(gateway: Client) -> None:
    async with gateway.ws_connect("/v1/responses", headers=AUTH) as socket:
        await socket.send_json({**WARMUP, "store": True})
        rid = (await response_events(socket))[-1]["response"]["id"]
    found = await gateway.get(f"/v1/responses/{rid}", headers=AUTH)
    assert found.status == 404
