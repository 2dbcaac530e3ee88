"""Guardrails on output: JSON answers and streams redacted, or ended as content_filter."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.keys import DEPS
from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, KEY_B
from tests.support.guardrails_events import split_events, sse_bytes
from tests.support.stub import Behaviour, StubUpstream

Client = TestClient[Any, Any]
EMAIL = "jane.doe@example.com"
KEY = "sk-proj-AbCdEf0123456789_AbCdEf01"
CARD = "4111 1111 1111 1111"
RULES: list[dict[str, Any]] = [
    {"name": "pii", "apply_to": ["output"], "detect": ["email", "secret"], "keys": ["team-a"]},
    {
        "name": "cards",
        "apply_to": ["output"],
        "detect": ["credit_card"],
        "action": "block",
        "keys": ["team-a"],
    },
]


@pytest.fixture
async def guarded(make_gateway: MakeGateway, config: dict[str, Any]) -> Client:
    config["guardrails"] = RULES
    return await make_gateway(config)


@pytest.fixture
async def client(guarded: Client) -> Any:
    async with openai.AsyncOpenAI(
        base_url=str(guarded.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        yield sdk


async def stream_of(client: openai.AsyncOpenAI, **kwargs: Any) -> list[Any]:
    stream = await client.responses.create(model="gpt-test", input="x", stream=True, **kwargs)
    return [event async for event in stream]


async def test_a_json_answer_is_redacted_and_kept_redacted(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    raw = await client.responses.with_raw_response.create(
        model="gpt-test", input=f"write to {EMAIL} with key {KEY}"
    )
    # An output rule: the upstream read the input as it was.
    assert EMAIL in stub.last.body.decode()
    assert raw.headers["x-gateway-guardrails"] == "pii"
    response = raw.parse()
    assert response.output_text == "Echo: write to [REDACTED:email] with key [REDACTED:secret]"
    kept = await client.responses.retrieve(response.id)
    assert kept.output_text == response.output_text


async def test_a_json_answer_a_block_rule_matches_comes_back_incomplete(
    client: openai.AsyncOpenAI,
) -> None:
    raw = await client.responses.with_raw_response.create(
        model="gpt-test", input=f"pay with {CARD} today"
    )
    assert raw.headers["x-gateway-guardrails"] == "cards"
    response = raw.parse()
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text == "Echo: pay with "
    kept = await client.responses.retrieve(response.id)
    assert kept.status == "incomplete"
    assert kept.output_text == "Echo: pay with "


TEXT = f"Reach me at {EMAIL} or use {KEY}, thanks."
REDACTED = "Reach me at [REDACTED:email] or use [REDACTED:secret], thanks."


async def test_a_match_split_across_deltas_is_caught_at_every_offset(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    for cut in range(1, len(TEXT)):
        stub.behaviour = Behaviour(events=split_events(TEXT, [cut]))
        got = await stream_of(client)
        deltas = "".join(e.delta for e in got if e.type == "response.output_text.delta")
        assert deltas == REDACTED, cut
        done = [e for e in got if e.type == "response.output_text.done"]
        assert [e.text for e in done] == [REDACTED]
        (part,) = [e.part for e in got if e.type == "response.content_part.done"]
        assert getattr(part, "text", None) == REDACTED
        assert got[-1].type == "response.completed"
        assert got[-1].response.output_text == REDACTED
        assert [e.sequence_number for e in got] == list(range(len(got)))


async def test_one_character_a_delta_is_caught_too(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(events=split_events(TEXT, list(range(len(TEXT)))))
    got = await stream_of(client)
    deltas = [e.delta for e in got if e.type == "response.output_text.delta"]
    assert "".join(deltas) == REDACTED
    # Only the text a match could still grow from is held back: here, the word being written.
    assert deltas[:3] == ["Reach", " ", "me"]
    kept = await client.responses.retrieve(got[-1].response.id)
    assert kept.output_text == REDACTED


async def test_a_block_mid_stream_ends_it_incomplete(
    client: openai.AsyncOpenAI, stub: StubUpstream, guarded: Client
) -> None:
    text = f"Your card is {CARD} and more text follows"
    stub.behaviour = Behaviour(events=split_events(text, list(range(0, len(text), 3))))
    got = await stream_of(client)
    end = got[-1]
    assert end.type == "response.incomplete"
    assert end.response.incomplete_details.reason == "content_filter"
    deltas = "".join(e.delta for e in got if e.type == "response.output_text.delta")
    assert deltas == "Your card is "
    assert end.response.output_text == deltas
    assert [e.sequence_number for e in got] == list(range(len(got)))
    kept = await client.responses.retrieve(end.response.id)
    assert kept.status == "incomplete"
    assert kept.output_text == deltas
    # The upstream's usage never came: the estimate is charged, and the rule named.
    deps = guarded.app[DEPS]
    await deps.settler.flush()
    record = [r for r in deps.governor.memory.stream if r["status"] == "200"][-1]
    assert record["usage"] == "estimated"
    assert record["guardrails"] == "cards"


async def test_a_key_without_rules_gets_the_upstream_bytes_unchanged(
    guarded: Client, stub: StubUpstream
) -> None:
    events = split_events(TEXT + f" card {CARD}", [5, 17, 30])
    sent = sse_bytes(events)
    stub.behaviour = Behaviour(raw_stream=sent)
    answer = await guarded.post(
        "/v1/responses",
        json={"model": "cheap", "input": "x", "stream": True, "store": False},
        headers={"Authorization": f"Bearer {KEY_B}"},
    )
    assert answer.status == 200
    assert await answer.read() == sent
    # The same stream to a key the rules name is rewritten.
    answer = await guarded.post(
        "/v1/responses",
        json={"model": "cheap", "input": "x", "stream": True, "store": False},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    body = await answer.read()
    assert EMAIL.encode() not in body
    assert b"content_filter" in body


async def test_a_background_job_keeps_and_replays_the_redacted_stream(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    stub.behaviour = Behaviour(events=split_events(TEXT, list(range(0, len(TEXT), 2))))
    first = await client.responses.create(model="gpt-test", input="x", background=True)
    async with asyncio.timeout(10):
        while (done := await client.responses.retrieve(first.id)).status in (
            "queued",
            "in_progress",
        ):
            await asyncio.sleep(0.05)
    assert done.output_text == REDACTED
    replay = await client.responses.retrieve(first.id, stream=True)
    deltas = "".join([e.delta async for e in replay if e.type == "response.output_text.delta"])
    assert deltas == REDACTED


async def test_text_that_comes_without_deltas_is_redacted_once_and_alike(
    client: openai.AsyncOpenAI, stub: StubUpstream, guarded: Client
) -> None:
    events = [e for e in split_events(TEXT, [10]) if e["type"] != "response.output_text.delta"]
    stub.behaviour = Behaviour(events=events)
    before = await (await guarded.get("/metrics")).text()
    got = await stream_of(client)
    (part,) = [e.part for e in got if e.type == "response.content_part.done"]
    assert getattr(part, "text", None) == REDACTED
    (item,) = [e.item for e in got if e.type == "response.output_item.done"]
    assert item.content[0].text == REDACTED
    assert got[-1].response.output_text == REDACTED
    after = await (await guarded.get("/metrics")).text()

    def pii_hits(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gateway_guardrail_hits_total{") and 'rule="pii"' in line
        )

    assert pii_hits(after) - pii_hits(before) == 2  # the address and the key, once each
