"""The OpenAI Agents SDK (`openai-agents`) against the gateway, written as its users write it:
a Runner with a function tool, streamed over plain HTTP and over WebSocket mode, with a
guardrail redacting personal data on the way up and on the way back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    responses_websocket_session,
    set_tracing_disabled,
)
from agents.models.openai_responses import ResponsesWebSocketError
from aiohttp.test_utils import TestClient

from tests.conftest import MakeGateway
from tests.support.configs import KEY_A
from tests.support.stub import StubUpstream

Client = TestClient[Any, Any]
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
ANSWER = "Tool said: Write to [REDACTED:email]."
RULES: list[dict[str, Any]] = [
    {"name": "pii", "detect": ["email"], "action": "redact"},
    {"name": "cards", "apply_to": ["input"], "detect": ["credit_card"], "action": "block"},
]


@function_tool
def lookup_contact(name: str) -> str:
    """The e-mail address of a person."""
    return f"Write to {EMAIL}."


def assistant() -> Agent[Any]:
    return Agent(
        name="Assistant",
        instructions="Answer with what the tools return.",
        tools=[lookup_contact],
    )


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    # The Agents SDK exports traces to api.openai.com by default; a gateway user turns that
    # off (or points it elsewhere), and a test must not call out.
    set_tracing_disabled(True)


@pytest.fixture
async def guarded(make_gateway: MakeGateway, config: dict[str, Any]) -> Client:
    config["guardrails"] = RULES
    return await make_gateway(config)


@pytest.fixture
async def client(guarded: Client) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=str(guarded.make_url("/v1")), api_key=KEY_A, max_retries=0
    ) as sdk:
        yield sdk


def check_upstream(stub: StubUpstream) -> None:
    """Two model calls (the tool call, then the answer); the upstream never read the address."""
    calls = [r for r in stub.requests if r.path == "/v1/responses"]
    assert len(calls) == 2
    for call in calls:
        assert EMAIL not in call.body.decode()
    assert "[REDACTED:email]" in calls[1].body.decode()


async def test_a_streamed_run_with_a_tool_over_http(
    client: openai.AsyncOpenAI, stub: StubUpstream
) -> None:
    agent = assistant()
    agent.model = OpenAIResponsesModel(model="gpt-test", openai_client=client)
    result = Runner.run_streamed(agent, "Use lookup_contact to find Jane.")
    deltas: list[str] = []
    tool_outputs: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event" and event.item.type == "tool_call_output_item":
            tool_outputs.append(str(event.item.output))
    assert tool_outputs == [f"Write to {EMAIL}."]  # the tool ran in the client
    assert result.final_output == ANSWER
    assert "".join(deltas) == result.final_output
    check_upstream(stub)


async def test_a_streamed_run_with_a_tool_over_websocket_mode(
    guarded: Client, stub: StubUpstream
) -> None:
    async with responses_websocket_session(
        api_key=KEY_A, base_url=str(guarded.make_url("/v1"))
    ) as ws:
        agent = assistant()
        agent.model = "gpt-test"
        result = ws.run_streamed(agent, "Use lookup_contact to find Jane.")
        deltas = [
            event.data.delta
            async for event in result.stream_events()
            if event.type == "raw_response_event"
            and event.data.type == "response.output_text.delta"
        ]
        assert result.final_output == ANSWER
        assert "".join(deltas) == result.final_output
    check_upstream(stub)


async def test_a_chain_of_runs_over_websocket_mode_without_storing(
    guarded: Client, stub: StubUpstream
) -> None:
    """WebSocket mode's point: each turn sends only what is new, chained on the last
    response, which nobody stores (the connection remembers it)."""
    async with responses_websocket_session(
        api_key=KEY_A, base_url=str(guarded.make_url("/v1"))
    ) as ws:
        agent = assistant()
        agent.model = "gpt-test"
        agent.model_settings = ModelSettings(store=False)
        first = await ws.run(
            agent, "Use lookup_contact to find Jane.", auto_previous_response_id=True
        )
        assert first.final_output == ANSWER
        second = await ws.run(
            agent, "Again: use lookup_contact.", previous_response_id=first.last_response_id
        )
        assert second.final_output == ANSWER
    calls = [r for r in stub.requests if r.path == "/v1/responses"]
    assert len(calls) == 4
    assert all(r.json["store"] is False for r in calls)
    assert all(EMAIL not in r.body.decode() for r in calls)
    # The last turn's context came from the connection: the first run's tool output in it.
    assert "Write to [REDACTED:email]." in calls[-1].body.decode()


async def test_a_blocked_turn_raises_and_the_session_goes_on(
    guarded: Client, stub: StubUpstream
) -> None:
    async with responses_websocket_session(
        api_key=KEY_A, base_url=str(guarded.make_url("/v1"))
    ) as ws:
        agent = assistant()
        agent.model = "gpt-test"
        with pytest.raises(ResponsesWebSocketError) as refused:
            await ws.run(agent, f"Pay with {CARD}.")
        assert refused.value.code == "content_blocked"
        assert CARD not in str(refused.value)
        assert stub.requests == []
        again = await ws.run(agent, "Use lookup_contact to find Joe.")
        assert again.final_output == ANSWER
