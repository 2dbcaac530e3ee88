"""client.responses.compact() of the official SDK against the gateway: a Responses upstream
compacts, the compacted window feeds the next turn, a Chat Completions upstream is a clear
BadRequestError."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.responses import CompactedResponse

from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stub import StubUpstream


@pytest.fixture
async def chat_sdk(
    make_gateway: MakeGateway, config: dict[str, Any], stub: StubUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    config = copy.deepcopy(config)
    config["providers"].append(
        {"name": "chatty", "api": "chat_completions", "base_url": f"{stub.url}/v1"}
    )
    config["models"].append(
        {"name": "chat-model", "targets": [{"provider": "chatty", "model": "c"}]}
    )
    gateway = await make_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as client:
        yield client


async def test_sdk_compacts_on_a_responses_upstream(
    sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    compacted = await sdk.responses.compact(
        model="gpt-test",
        input=[
            {"role": "user", "content": "Plan a weekend in Lisbon."},
            {"role": "assistant", "content": "Day one: Alfama. Day two: Belem."},
            {"role": "user", "content": "Add a day trip."},
        ],
        instructions="You plan trips.",
        prompt_cache_key="trip-planner",
        service_tier="flex",
    )
    assert isinstance(compacted, CompactedResponse)
    assert compacted.object == "response.compaction"
    assert compacted.output[-1].type == "compaction"
    assert compacted.usage.input_tokens > 0
    assert stub.last.path == "/v1/responses/compact"
    assert stub.last.json["prompt_cache_key"] == "trip-planner"
    assert stub.last.json["service_tier"] == "flex"

    # The compacted window is the next turn's input, as the SDK hands it back (its output
    # types expect output_text in messages: the kept user messages carry input_text).
    window: list[Any] = [
        item.model_dump(mode="json", exclude_none=True, warnings=False) for item in compacted.output
    ]
    follow = await sdk.responses.create(
        model="gpt-test", input=[*window, {"role": "user", "content": "And the budget?"}]
    )
    assert follow.status == "completed"
    sent = stub.last.json["input"]
    assert any(item.get("type") == "compaction" for item in sent)


async def test_sdk_compacts_a_stored_chain(sdk: openai.AsyncOpenAI, stub: StubUpstream) -> None:
    first = await sdk.responses.create(model="gpt-test", input="Remember: my name is Ada.")
    compacted = await sdk.responses.compact(model="gpt-test", previous_response_id=first.id)
    assert compacted.output[-1].type == "compaction"
    texts = [part["text"] for item in stub.last.json["input"] for part in item.get("content", [])]
    assert texts[0] == "Remember: my name is Ada."


async def test_sdk_compacts_on_the_mock_provider(sdk: openai.AsyncOpenAI) -> None:
    compacted = await sdk.responses.compact(model="mock-model", input="Hello there")
    assert [item.type for item in compacted.output] == ["message", "compaction"]


async def test_sdk_gets_a_clear_bad_request_on_a_chat_upstream(
    chat_sdk: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await chat_sdk.responses.compact(model="chat-model", input="hi")
    assert info.value.status_code == 400
    assert info.value.code == "unsupported_endpoint"
    assert "/responses/compact" in info.value.message
    assert "chatty" in info.value.message
    assert stub.requests == []
