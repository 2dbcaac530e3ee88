"""Each POST /responses/compact is logged (one access line), counted (one move of the request
counter) and settled (its lease given back, one usage record) exactly once, however it ends:
answered, failed upstream, left by its client, or refused before the upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.once import Client, Ledger
from tests.support.stream_faults import (
    RESET,
    STALL,
    AccessLines,
    RawClient,
    ScriptedUpstream,
    cancelling_gateway,
    clients_gone,
    on_scripted,
)
from tests.support.stub import StubUpstream

AUTH = {"Authorization": f"Bearer {KEY_A}"}
COMPACT = {"model": "gpt-test", "input": "Tell me a story"}
CARD = "4111 1111 1111 1111"
HALF_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    b'{"id": "cmp_1", "object": "response.compaction", "output": ['
)


def sdk(gateway: Client) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0)


async def test_a_compaction_answered_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, limited: dict[str, Any], access: AccessLines
) -> None:
    gateway = await cancelling_gateway(make_gateway, limited)
    ledger = Ledger(gateway, access, "compact_response")
    async with sdk(gateway) as client:
        compacted = await client.responses.compact(model="gpt-test", input="Tell me a story")
    assert compacted.object == "response.compaction"
    (line,) = await ledger.ended()
    assert line["status"] == 200
    assert ledger.counted() == {"2xx": 1}
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == ("200", "reported")
    assert ledger.held() == 0


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ([b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\ndown"], 502),
        ([RESET], 502),
        ([HALF_ANSWER, RESET], 502),
        ([STALL], 504),
        ([HALF_ANSWER, STALL], 504),
    ],
    ids=["5xx", "reset-before-headers", "reset-mid-body", "stall-before-headers", "stall-mid-body"],
)
async def test_a_compaction_the_upstream_fails_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway,
    limited: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
    script: list[bytes | str],
    status: int,
) -> None:
    limited["providers"][0]["timeout_s"] = 0.3
    gateway, _ = await on_scripted(make_gateway, limited, scripted, script)
    ledger = Ledger(gateway, access, "compact_response")
    resp = await gateway.post("/v1/responses/compact", json=COMPACT, headers=AUTH)
    assert resp.status == status, await resp.text()
    (line,) = await ledger.ended()
    assert line["status"] == status
    assert ledger.counted() == {"5xx": 1}
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == (str(status), "none")
    assert ledger.held() == 0


async def test_a_client_leaving_a_compaction_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway,
    limited: dict[str, Any],
    scripted: list[ScriptedUpstream],
    access: AccessLines,
) -> None:
    gateway, upstream = await on_scripted(make_gateway, limited, scripted, [STALL])
    ledger = Ledger(gateway, access, "compact_response")
    gone = clients_gone()

    async def in_flight() -> None:
        await upstream.received.wait()
        assert ledger.held() == 1  # the key's lease, given back when it is settled

    client = RawClient(str(gateway.make_url("")))
    await client.leave("POST", "/v1/responses/compact", AUTH, COMPACT, when=in_flight)
    await asyncio.wait_for(upstream.hung_up.wait(), 5)
    (line,) = await ledger.ended()
    assert (line["status"], line["client_gone"]) == (499, True)
    assert ledger.counted() == {"4xx": 1}
    assert clients_gone() == gone + 1
    (record,) = ledger.records()
    assert (record["status"], record["usage"]) == ("499", "estimated")
    assert int(record["input_tokens"]) > 0
    assert ledger.held() == 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"input": 42}, 400, "invalid_type"),
        ({"model": "no-such-model"}, 404, "model_not_found"),
        ({"input": f"pay with {CARD}"}, 400, "content_blocked"),
    ],
    ids=["bad-body", "unknown-model", "guardrail-block"],
)
async def test_a_refused_compaction_is_logged_counted_and_settled_once(
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
    ledger = Ledger(gateway, access, "compact_response")
    resp = await gateway.post("/v1/responses/compact", json={**COMPACT, **change}, headers=AUTH)
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"]["code"] == code
    assert stub.requests == []
    (line,) = await ledger.ended()
    assert line["status"] == status
    assert ledger.counted() == {"4xx": 1}
    # Settled once if it was admitted (its input is scanned after admission), else never.
    admitted = code == "content_blocked"
    assert [r["status"] for r in ledger.records()] == ([str(status)] if admitted else [])
    assert ledger.held() == 0


async def test_a_compaction_over_the_keys_rpm_is_logged_counted_and_settled_once(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream, access: AccessLines
) -> None:
    config["auth"]["keys"][0]["rpm"] = 1
    gateway = await cancelling_gateway(make_gateway, config)
    ledger = Ledger(gateway, access, "compact_response")
    statuses = []
    for _ in range(2):
        resp = await gateway.post("/v1/responses/compact", json=COMPACT, headers=AUTH)
        statuses.append(resp.status)
    assert statuses == [200, 429]
    assert len(stub.requests) == 1
    lines = await ledger.ended(2)
    assert [line["status"] for line in lines] == [200, 429]
    assert ledger.counted() == {"2xx": 1, "4xx": 1}
    assert [r["status"] for r in ledger.records()] == ["200"]  # the refused one was never admitted
