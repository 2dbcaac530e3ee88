"""The fake model: canonical Responses events, usage, tool calls and chat chunks."""

import json
from typing import Any

import pytest

from gateway.mockgen import PANGRAM, build_chat_completion, build_response

Json = dict[str, Any]

WEATHER_TOOL: Json = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "metric": {"type": "boolean"},
            "hours": {"type": "array", "items": {"type": "integer"}},
            "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}},
                "required": ["lat"],
            },
            "note": {"type": "string"},
        },
        "required": ["city", "days", "metric", "hours", "unit", "where"],
    },
}
CHAT_TOOL: Json = {
    "type": "function",
    "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"},
}
TEXT_BODIES: dict[str, Json] = {
    "string": {"input": "hello there"},
    "easy-messages": {"input": [{"role": "user", "content": "hello there"}]},
    "typed-parts": {
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ]
    },
    "no-user-text": {"input": [{"role": "developer", "content": "be brief"}]},
    "tool-output": {
        "input": [
            {"role": "user", "content": "call get_weather"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [WEATHER_TOOL],
    },
}


def deltas(events: list[Json], kind: str) -> str:
    return "".join(ev["delta"] for ev in events if ev["type"] == kind)


@pytest.mark.parametrize("body", TEXT_BODIES.values(), ids=TEXT_BODIES.keys())
def test_sequence_numbers_are_contiguous_from_zero(body: Json) -> None:
    events = build_response(body, model="m").events()
    assert [ev["sequence_number"] for ev in events] == list(range(len(events)))


def test_events_follow_canonical_text_order() -> None:
    types = [ev["type"] for ev in build_response({"input": "a b"}, model="m").events()]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_created_event_is_an_empty_snapshot() -> None:
    run = build_response({"input": "hi"}, model="m")
    created = run.events()[0]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert created["id"] == run.response["id"]


@pytest.mark.parametrize("body", TEXT_BODIES.values(), ids=TEXT_BODIES.keys())
def test_deltas_join_to_final_text(body: Json) -> None:
    run = build_response(body, model="m")
    text = run.response["output"][0]["content"][0]["text"]
    assert deltas(run.events(), "response.output_text.delta") == text
    assert run.events()[-1]["response"] is run.response


@pytest.mark.parametrize(
    ("body", "text"),
    [
        pytest.param(TEXT_BODIES["string"], "Echo: hello there", id="echo"),
        pytest.param(TEXT_BODIES["no-user-text"], PANGRAM, id="pangram"),
        pytest.param(TEXT_BODIES["tool-output"], "Tool said: sunny", id="tool-output"),
    ],
)
def test_text_is_derived_from_input(body: Json, text: str) -> None:
    assert build_response(body, model="m").response["output"][0]["content"][0]["text"] == text


def test_text_is_capped_at_forty_words() -> None:
    run = build_response({"input": "word " * 100}, model="m")
    assert len(run.response["output"][0]["content"][0]["text"].split()) == 40


def test_usage_totals_add_up() -> None:
    run = build_response({"input": "x" * 40, "instructions": "y" * 8}, model="m")
    usage = run.response["usage"]
    assert usage["input_tokens"] == 12
    assert usage["output_tokens"] == 2
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}


def test_response_echoes_request_and_defaults() -> None:
    body = {"input": "hi", "metadata": {"k": "v"}, "temperature": 0.5, "store": False}
    response = build_response(body, model="gpt-x", response_id="resp_1", created_at=7).response
    assert response["id"] == "resp_1"
    assert response["created_at"] == 7
    assert response["model"] == "gpt-x"
    assert response["metadata"] == {"k": "v"}
    assert (response["temperature"], response["top_p"], response["store"]) == (0.5, 1.0, False)
    assert (response["tool_choice"], response["tools"], response["parallel_tool_calls"]) == (
        "auto",
        [],
        True,
    )
    assert response["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert build_response({"input": "hi"}, model="m").response["metadata"] == {}


def test_fixed_ids_give_identical_runs() -> None:
    first = build_response({"input": "hi"}, model="m", response_id="resp_a", created_at=1)
    second = build_response({"input": "hi"}, model="m", response_id="resp_a", created_at=1)
    assert first.events() == second.events()


def test_ids_have_openai_prefixes() -> None:
    message = build_response({"input": "hi"}, model="m").response
    call = build_response(
        {"input": "hi", "tools": [WEATHER_TOOL], "tool_choice": "required"}, model="m"
    ).response["output"][0]
    assert message["id"].startswith("resp_")
    assert message["output"][0]["id"].startswith("msg_")
    assert (call["id"][:3], call["call_id"][:5]) == ("fc_", "call_")


def assert_weather_arguments(arguments: str) -> None:
    args = json.loads(arguments)
    assert args == {
        "city": "example",
        "days": 1,
        "metric": True,
        "hours": [],
        "unit": "c",
        "where": {"lat": 1},
    }


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"input": "what does get_weather say?"}, id="named-in-text"),
        pytest.param({"input": "hi", "tool_choice": "required"}, id="required"),
        pytest.param(
            {"input": "hi", "tool_choice": {"type": "function", "name": "get_weather"}},
            id="forced-by-name",
        ),
    ],
)
def test_function_call_arguments_are_json_with_required_props(extra: Json) -> None:
    run = build_response({"tools": [WEATHER_TOOL], **extra}, model="m")
    item = run.response["output"][0]
    assert (item["type"], item["name"], item["status"]) == (
        "function_call",
        "get_weather",
        "completed",
    )
    assert_weather_arguments(item["arguments"])
    events = run.events()
    assert deltas(events, "response.function_call_arguments.delta") == item["arguments"]
    assert run.response["usage"]["output_tokens"] == len(
        [ev for ev in events if ev["type"] == "response.function_call_arguments.delta"]
    )


def test_function_call_follows_canonical_order() -> None:
    run = build_response({"input": "get_weather", "tools": [WEATHER_TOOL]}, model="m")
    types = [ev["type"] for ev in run.events()]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(types[3:-3]) == {"response.function_call_arguments.delta"}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"input": "hi"}, id="not-named"),
        pytest.param({"input": "get_weather", "tool_choice": "none"}, id="choice-none"),
        pytest.param(TEXT_BODIES["tool-output"], id="after-tool-output"),
    ],
)
def test_no_function_call(extra: Json) -> None:
    run = build_response({"tools": [WEATHER_TOOL], **extra}, model="m")
    assert run.response["output"][0]["type"] == "message"


def test_small_max_output_tokens_is_incomplete() -> None:
    run = build_response({"input": "one two three four five", "max_output_tokens": 3}, model="m")
    response = run.response
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"][0]["text"] == "Echo: one two"
    assert response["usage"]["output_tokens"] == 3
    assert run.events()[-1]["type"] == "response.incomplete"


def test_large_max_output_tokens_completes() -> None:
    run = build_response({"input": "hi", "max_output_tokens": 16}, model="m")
    assert run.response["status"] == "completed"
    assert run.response["incomplete_details"] is None


def reassemble(chunks: list[Json]) -> Json:
    """Rebuild a chat completion's message, finish reason and usage from its chunks."""
    content: str | None = None
    calls: dict[int, Json] = {}
    finish, usage = None, None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if delta.get("content") is not None:
                content = (content or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"function": {"arguments": ""}})
                slot.update({k: call[k] for k in ("id", "type") if k in call})
                slot["function"]["name"] = call["function"].get(
                    "name", slot["function"].get("name")
                )
                slot["function"]["arguments"] += call["function"].get("arguments", "")
            finish = choice["finish_reason"] or finish
    message: Json = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"message": message, "finish_reason": finish, "usage": usage}


CHAT_BODIES: dict[str, Json] = {
    "text": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hey"}]},
    "parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hey"}]}]},
    "length": {"messages": [{"role": "user", "content": "a b c d"}], "max_tokens": 2},
    "length-new": {
        "messages": [{"role": "user", "content": "a b c d"}],
        "max_completion_tokens": 2,
    },
    "tool-call": {"messages": [{"role": "user", "content": "get_weather"}], "tools": [CHAT_TOOL]},
    "tool-output": {
        "messages": [
            {"role": "user", "content": "get_weather"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "tool_call_id": "c1", "content": "rainy"},
        ],
        "tools": [CHAT_TOOL],
    },
}


@pytest.mark.parametrize("body", CHAT_BODIES.values(), ids=CHAT_BODIES.keys())
def test_chat_chunks_reassemble_to_completion(body: Json) -> None:
    chat = build_chat_completion({**body, "stream_options": {"include_usage": True}}, model="m")
    completion = chat.completion()
    rebuilt = reassemble(chat.chunks())
    choice = completion["choices"][0]
    assert rebuilt["message"]["content"] == choice["message"]["content"]
    assert rebuilt["message"].get("tool_calls") == choice["message"].get("tool_calls")
    assert rebuilt["finish_reason"] == choice["finish_reason"]
    assert rebuilt["usage"] == completion["usage"]


@pytest.mark.parametrize(
    ("name", "finish", "content"),
    [
        ("text", "stop", "Echo: hey"),
        ("length", "length", "Echo: a"),
        ("tool-call", "tool_calls", None),
        ("tool-output", "stop", "Tool said: rainy"),
    ],
)
def test_chat_completion_answers(name: str, finish: str, content: str | None) -> None:
    completion = build_chat_completion(CHAT_BODIES[name], model="m").completion()
    choice = completion["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == (finish, content)
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_tool_call_has_valid_arguments() -> None:
    message = build_chat_completion(CHAT_BODIES["tool-call"], model="m").completion()
    call = message["choices"][0]["message"]["tool_calls"][0]
    assert (call["type"], call["function"]["name"]) == ("function", "get_weather")
    assert call["id"].startswith("call_")
    assert_weather_arguments(call["function"]["arguments"])


def test_chat_tool_call_arguments_span_several_chunks() -> None:
    chunks = build_chat_completion(CHAT_BODIES["tool-call"], model="m").chunks()
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")) > 2


def test_chat_chunks_without_include_usage_have_no_usage() -> None:
    chunks = build_chat_completion(CHAT_BODIES["text"], model="m").chunks()
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_chat_usage_chunk_is_last_and_empty() -> None:
    body = {**CHAT_BODIES["text"], "stream_options": {"include_usage": True}}
    last = build_chat_completion(body, model="m").chunks()[-1]
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0
