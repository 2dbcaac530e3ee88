"""Guardrails on input: redacted before the upstream reads it, or refused with content_blocked."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeGateway
from tests.support.configs import KEY_A, KEY_B
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
RULES: list[dict[str, Any]] = [
    {"name": "pii", "apply_to": ["input"], "detect": ["email", "phone"], "keys": ["team-a"]},
    {
        "name": "cards",
        "apply_to": ["input"],
        "detect": ["credit_card"],
        "action": "block",
        "models": ["gpt-test"],
        "keys": ["team-a"],
    },
    {
        "name": "codename",
        "apply_to": ["input"],
        "patterns": [r"project\s+bluebird"],
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


async def test_pii_in_input_is_redacted_before_the_upstream_sees_it(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    raw = await client.responses.with_raw_response.create(
        model="gpt-test",
        instructions="Reply to jane.doe@example.com politely.",
        input=[
            {"role": "user", "content": f"Mail me at {EMAIL} or +1 415 555 0132"},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "about project  bluebird"}],
            },
            {"type": "function_call_output", "call_id": "c1", "output": f"owner: {EMAIL}"},
        ],
    )
    sent = stub.last.body.decode()
    assert EMAIL not in sent
    assert "555 0132" not in sent
    assert "bluebird" not in sent
    body = stub.last.json
    assert body["instructions"] == "Reply to [REDACTED:email] politely."
    assert body["input"][0]["content"] == "Mail me at [REDACTED:email] or [REDACTED:phone]"
    assert body["input"][1]["content"][0]["text"] == "about [REDACTED:codename]"
    assert body["input"][2]["output"] == "owner: [REDACTED:email]"
    assert raw.headers["x-gateway-guardrails"] == "pii,codename"
    response = raw.parse()
    # What is kept as the request's input holds no matched text either.
    kept = await client.responses.input_items.list(response.id)
    assert EMAIL not in kept.model_dump_json()
    assert "[REDACTED:email]" in kept.model_dump_json()


async def test_a_block_rule_refuses_with_content_blocked_naming_the_field(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(
            model="gpt-test",
            input=[
                {"role": "user", "content": "hello"},
                {"role": "user", "content": [{"type": "input_text", "text": f"card {CARD}"}]},
            ],
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_blocked"
    assert error["param"] == "input[1].content[0].text"
    assert "cards" in error["message"]
    assert "4111" not in error["message"]
    assert refused.value.response.headers["x-gateway-guardrails"] == "cards"
    assert stub.requests == []
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="gpt-test", instructions=f"use {CARD}", input="hi")
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["param"] == "instructions"
    # The rule names its model: another model's request goes through (the card untouched).
    await client.responses.create(model="cheap", input=f"card {CARD}")
    assert CARD in stub.last.body.decode()


async def test_a_key_no_rule_applies_to_is_untouched(guarded: Client, stub: StubUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=str(guarded.make_url("/v1")), api_key=KEY_B, max_retries=0
    ) as other:
        raw = await other.responses.with_raw_response.create(
            model="cheap", input=f"Mail {EMAIL}, card {CARD}"
        )
    assert "x-gateway-guardrails" not in raw.headers
    assert f"Mail {EMAIL}, card {CARD}" in stub.last.body.decode()


async def test_the_stored_context_of_a_chain_is_scanned_too(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> None:
    # The rules cover gpt-test only: a first turn on `cheap` keeps the address.
    config["guardrails"] = [
        {"name": "pii", "apply_to": ["input"], "detect": ["email"], "models": ["gpt-test"]},
        {
            "name": "cards",
            "apply_to": ["input"],
            "detect": ["credit_card"],
            "action": "block",
            "models": ["gpt-test"],
        },
    ]
    gw = await make_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=str(gw.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        first = await client.responses.create(model="cheap", input=f"I am {EMAIL}")
        assert EMAIL in first.output_text
        await client.responses.create(
            model="gpt-test", previous_response_id=first.id, input="and again"
        )
        sent = stub.last.json["input"]
        assert EMAIL not in stub.last.body.decode()
        assert sent[0]["content"][0]["text"] == "I am [REDACTED:email]"
        # What the first turn kept is still its own.
        again = await client.responses.input_items.list(first.id)
        assert EMAIL in again.model_dump_json()
        carded = await client.responses.create(model="cheap", input=f"card {CARD}")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="gpt-test", previous_response_id=carded.id, input="hi"
            )
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["param"] == "previous_response_id"


async def test_a_stream_names_the_rules_its_input_matched(
    guarded: Client, stub: StubUpstream
) -> None:
    answer = await guarded.post(
        "/v1/responses",
        json={"model": "gpt-test", "input": f"mail {EMAIL}", "stream": True},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status == 200
    assert answer.headers["x-gateway-guardrails"] == "pii"
    await answer.read()
    assert EMAIL not in stub.last.body.decode()
