"""Responses <-> Chat Completions translation: requests, completions and chunk streams."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.mockgen import build_chat_completion
from gateway.translate.chat import (
    ChatStreamError,
    ChatStreamTranslator,
    from_chat_completion,
    to_chat_request,
)

Json = dict[str, Any]
RID = "resp_test"
TOOL: Json = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather.",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CHAT_TOOL: Json = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": TOOL["parameters"],
        "strict": True,
    },
}
RESPONSE_FIELDS = (
    "id",
    "object",
    "created_at",
    "status",
    "model",
    "output",
    "parallel_tool_calls",
    "tool_choice",
    "tools",
    "error",
    "incomplete_details",
    "instructions",
    "metadata",
    "temperature",
    "top_p",
    "completed_at",
    "max_output_tokens",
    "reasoning",
    "text",
    "store",
    "usage",
    "background",
    "truncation",
    "user",
    "service_tier",
)


def messages(body: Json) -> list[Json]:
    result: list[Json] = to_chat_request(body, "up-model")["messages"]
    return result


def refused(body: Json) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as err:
        to_chat_request(body, "up-model")
    return err.value


# -- requests -----------------------------------------------------------------


def test_string_input_is_one_user_message() -> None:
    chat = to_chat_request({"model": "m", "input": "Hi"}, "up-model")
    assert chat == {"model": "up-model", "messages": [{"role": "user", "content": "Hi"}]}


def test_instructions_lead_as_a_system_message() -> None:
    assert messages({"instructions": "Be brief.", "input": "Hi"}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_easy_messages_keep_their_roles_and_developer_becomes_system() -> None:
    body = {
        "input": [
            {"role": "developer", "content": "Rules"},
            {"role": "system", "content": "More rules"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
        ]
    }
    assert messages(body) == [
        {"role": "system", "content": "Rules"},
        {"role": "system", "content": "More rules"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]


def test_typed_message_parts_become_chat_parts() -> None:
    body = {
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA==",
                        "detail": "original",
                    },
                ],
            }
        ]
    }
    assert messages(body) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        }
    ]


def test_single_text_part_becomes_a_string() -> None:
    body = {
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
        ]
    }
    assert messages(body) == [{"role": "user", "content": "Hi"}]


def test_replayed_assistant_output_becomes_assistant_text() -> None:
    body = {
        "input": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "No."}],
            },
        ]
    }
    assert messages(body) == [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": None, "refusal": "No."},
    ]


def test_function_calls_merge_into_one_assistant_message() -> None:
    body = {
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {
                "type": "function_call",
                "call_id": "call_3",
                "name": "get_weather",
                "arguments": "{}",
            },
        ]
    }
    assert messages(body) == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_3",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
    ]


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[1]"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[1].type"),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "read"},
                    {"type": "input_file", "file_id": "file_1"},
                ],
            },
            "input[1].content[1]",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
            "input[1].content[0]",
        ),
        (
            {"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]},
            "input[1].content[0]",
        ),
        (
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_image", "image_url": "https://x"}],
            },
            "input[1].output[0]",
        ),
    ],
    ids=[
        "item_reference",
        "hosted_call",
        "input_file",
        "image_file_id",
        "system_image",
        "tool_output_image",
    ],
)
def test_inexpressible_input_is_refused_with_its_path(item: Json, param: str) -> None:
    err = refused({"input": [{"role": "user", "content": "Hi"}, item]})
    assert (err.status, err.param, err.code) == (400, param, "unsupported_value")


def test_function_tools_become_chat_tools() -> None:
    chat = to_chat_request(
        {"input": "x", "tools": [TOOL], "parallel_tool_calls": False}, "up-model"
    )
    assert chat["tools"] == [CHAT_TOOL]
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    "kind",
    [
        "web_search",
        "file_search",
        "code_interpreter",
        "mcp",
        "image_generation",
        "computer_use_preview",
        "custom",
    ],
)
def test_hosted_tool_is_refused_with_its_index(kind: str) -> None:
    err = refused({"input": "x", "tools": [TOOL, {"type": kind}]})
    assert (err.status, err.param, err.code) == (400, "tools[1].type", "unsupported_value")
    assert kind in err.message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_weather"}],
            },
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        ),
    ],
    ids=["auto", "none", "required", "function", "allowed_tools"],
)
def test_tool_choice_becomes_the_chat_form(choice: Any, expected: Any) -> None:
    chat = to_chat_request({"input": "x", "tools": [TOOL], "tool_choice": choice}, "m")
    assert chat["tool_choice"] == expected


def test_tool_choice_forcing_a_hosted_tool_is_refused() -> None:
    err = refused({"input": "x", "tools": [TOOL], "tool_choice": {"type": "file_search"}})
    assert (err.param, err.code) == ("tool_choice", "unsupported_value")


def test_tool_choice_without_tools_is_not_sent() -> None:
    chat = to_chat_request({"input": "x", "tool_choice": "none", "parallel_tool_calls": True}, "m")
    assert "tool_choice" not in chat
    assert "parallel_tool_calls" not in chat


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            {
                "type": "json_schema",
                "name": "Out",
                "schema": {"type": "object"},
                "strict": True,
                "description": "d",
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "Out",
                    "description": "d",
                    "schema": {"type": "object"},
                    "strict": True,
                },
            },
        ),
        ({"type": "json_object"}, {"type": "json_object"}),
    ],
    ids=["json_schema", "json_object"],
)
def test_text_format_becomes_response_format(fmt: Json, expected: Json) -> None:
    chat = to_chat_request({"input": "x", "text": {"format": fmt}}, "m")
    assert chat["response_format"] == expected


def test_plain_text_format_sends_nothing() -> None:
    assert "response_format" not in to_chat_request(
        {"input": "x", "text": {"format": {"type": "text"}, "verbosity": "low"}}, "m"
    )


def test_sampling_limits_and_identity_fields_are_mapped() -> None:
    body = {
        "input": "x",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_output_tokens": 100,
        "reasoning": {"effort": "low", "summary": "auto"},
        "top_logprobs": 3,
        "include": ["message.output_text.logprobs"],
        "safety_identifier": "u-hash",
        "user": "old",
        "metadata": {"k": "v"},
        "store": True,
        "stream": True,
    }
    chat = to_chat_request(body, "m")
    del chat["messages"]
    assert chat == {
        "model": "m",
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "reasoning_effort": "low",
        "logprobs": True,
        "top_logprobs": 3,
        "user": "u-hash",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_stored_prompt_is_refused() -> None:
    assert refused({"prompt": {"id": "pmpt_1"}}).param == "prompt"


# -- completions --------------------------------------------------------------


def completion(message: Json, finish_reason: str = "stop", usage: Json | None = None) -> Json:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def translate(completion: Json, request: Json | None = None) -> Json:
    return from_chat_completion(
        completion,
        request or {"model": "chat-model", "input": "x"},
        response_id=RID,
        created_at=100,
        completed_at=101,
    )


def test_text_completion_is_a_full_response() -> None:
    request = {
        "model": "chat-model",
        "input": "x",
        "instructions": "I",
        "temperature": 0.5,
        "tools": [TOOL],
        "tool_choice": "auto",
        "max_output_tokens": 50,
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "low"},
        "store": False,
    }
    response = translate(completion({"content": "Hello"}), request)
    assert all(name in response for name in RESPONSE_FIELDS)
    assert response["id"] == RID
    assert response["object"] == "response"
    assert (response["created_at"], response["completed_at"]) == (100, 101)
    assert response["status"] == "completed"
    assert response["error"] is None
    assert response["model"] == "chat-model"
    assert (response["instructions"], response["temperature"], response["top_p"]) == ("I", 0.5, 1.0)
    assert response["tools"] == [TOOL]
    assert response["max_output_tokens"] == 50
    assert response["metadata"] == {}
    assert response["store"] is False
    assert response["text"]["format"] == {"type": "json_object"}
    assert response["reasoning"] == {"effort": "low", "summary": None}
    (item,) = response["output"]
    assert item["id"].startswith("msg_")
    assert item == {
        "id": item["id"],
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}],
    }


def test_tool_calls_become_function_call_items_after_the_text() -> None:
    calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": f'{{"city":"{n}"}}'},
        }
        for n in ("a", "b")
    ]
    output = translate(completion({"content": "Let me check.", "tool_calls": calls}, "tool_calls"))[
        "output"
    ]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    for item, n in zip(output[1:], ("a", "b"), strict=True):
        assert item["id"].startswith("fc_")
        assert item | {"id": ""} == {
            "id": "",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_{n}",
            "name": "get_weather",
            "arguments": f'{{"city":"{n}"}}',
        }
    assert len({item["id"] for item in output}) == 3


def test_refusal_is_a_refusal_part() -> None:
    (item,) = translate(completion({"content": None, "refusal": "I can't."}))["output"]
    assert item["content"] == [{"type": "refusal", "refusal": "I can't."}]


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_early_stop_is_incomplete(finish_reason: str, reason: str) -> None:
    response = translate(completion({"content": "Cut"}, finish_reason))
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None
    assert response["output"][0]["status"] == "incomplete"


def test_usage_is_mapped_with_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert translate(completion({"content": "x"}, usage=usage))["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 140,
    }


def test_logprobs_and_url_citations_are_carried() -> None:
    message = {
        "content": "Paris",
        "annotations": [
            {
                "type": "url_citation",
                "url_citation": {
                    "start_index": 0,
                    "end_index": 5,
                    "title": "P",
                    "url": "https://p",
                },
            }
        ],
    }
    chat = completion(message)
    chat["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "Paris",
                "logprob": -0.1,
                "bytes": [80],
                "top_logprobs": [{"token": "Paris", "logprob": -0.1, "bytes": [80]}],
            }
        ]
    }
    (part,) = translate(chat)["output"][0]["content"]
    assert part["annotations"] == [
        {"type": "url_citation", "start_index": 0, "end_index": 5, "title": "P", "url": "https://p"}
    ]
    assert part["logprobs"] == chat["choices"][0]["logprobs"]["content"]


def test_empty_answer_is_one_empty_message() -> None:
    (item,) = translate(completion({"content": ""}))["output"]
    assert item["content"][0]["text"] == ""


# -- streams ------------------------------------------------------------------


def chunk(delta: Json, finish_reason: str | None = None) -> Json:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def call_chunk(index: int, arguments: str, call_id: str | None = None) -> Json:
    call: Json = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call |= {"id": call_id, "type": "function"}
        call["function"]["name"] = "get_weather"
    return chunk({"tool_calls": [call]})


USAGE_CHUNK: Json = {
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}


def run(chunks: Iterable[Json], request: Json | None = None) -> list[Json]:
    translator = ChatStreamTranslator(
        request or {"model": "chat-model", "input": "x"}, response_id=RID, created_at=100
    )
    events = translator.start()
    for c in chunks:
        events += translator.feed(c)
    return events + translator.finish(101)


def check_canonical(events: list[Json]) -> None:
    """The order §6 of the spec gives, event by event, and what the SDK's helper relies on."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert {e["response"]["id"] for e in (events[0], events[1], events[-1])} == {RID}
    assert events[0]["response"]["output"] == []
    assert events[0]["response"]["usage"] is None
    done_items: list[Json] = []
    open_item: Json | None = None
    part: Json | None = None
    pieces: list[str] = []
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert open_item is None, "an item opened before the previous one closed"
            assert event["output_index"] == len(done_items)
            open_item, pieces = event["item"], []
            assert open_item["status"] == "in_progress"
            assert open_item.get("content", []) == []
            assert open_item.get("arguments", "") == ""
            continue
        assert open_item is not None, f"{kind} outside an item"
        assert event["output_index"] == len(done_items)
        if kind == "response.output_item.done":
            assert part is None
            assert event["item"]["id"] == open_item["id"]
            done_items.append(event["item"])
            open_item = None
            continue
        assert event["item_id"] == open_item["id"]
        if kind == "response.content_part.added":
            assert part is None
            assert open_item["type"] == "message"
            part, pieces = event["part"], []
            assert event["content_index"] == len(done_items_parts(events, event))
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            assert part is not None
            assert kind.startswith(f"response.{part['type']}.")
            pieces.append(event["delta"])
            if part["type"] == "output_text":
                assert event["logprobs"] == []
        elif kind == "response.output_text.done":
            assert part is not None
            assert event["text"] == "".join(pieces)
            assert event["logprobs"] == []
        elif kind == "response.refusal.done":
            assert part is not None
            assert event["refusal"] == "".join(pieces)
        elif kind == "response.content_part.done":
            assert part is not None
            assert event["part"]["type"] == part["type"]
            part = None
        elif kind == "response.function_call_arguments.delta":
            assert open_item["type"] == "function_call"
            pieces.append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            assert event["arguments"] == "".join(pieces)
            assert event["name"] == open_item["name"]
            pieces = []
        else:
            raise AssertionError(f"unexpected {kind}")
    assert open_item is None
    assert events[-1]["response"]["output"] == done_items


def done_items_parts(events: list[Json], added: Json) -> list[Json]:
    """The parts of `added`'s item closed before it."""
    return [
        e
        for e in events
        if e["type"] == "response.content_part.done"
        and e["item_id"] == added["item_id"]
        and e["sequence_number"] < added["sequence_number"]
    ]


def types(events: list[Json]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def test_text_stream_is_canonical_and_matches_the_json_translation() -> None:
    request = {"model": "chat-model", "input": "Hello there", "stream": True}
    mock = build_chat_completion(
        to_chat_request(request, "m"), model="m", completion_id="c", created=1
    )
    events = run(mock.chunks(), request)
    check_canonical(events)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Echo: Hello there"
    assert final["usage"]["total_tokens"] == final["usage"]["input_tokens"] + 3
    assert final == translate(mock.completion(), request)


def test_one_call_stream_is_canonical() -> None:
    request = {"model": "chat-model", "input": "get_weather please", "tools": [TOOL]}
    mock = build_chat_completion(to_chat_request(request, "m") | {"stream": True}, model="m")
    events = run(mock.chunks(), request)
    check_canonical(events)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    added, done = events[2]["item"], events[-2]["item"]
    assert (added["type"], added["name"], added["call_id"]) == (
        "function_call",
        "get_weather",
        done["call_id"],
    )
    assert done["arguments"] == '{"city":"example"}'
    assert done["status"] == "completed"


def test_two_parallel_calls_stream_as_two_blocks() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        call_chunk(0, "", "call_a"),
        call_chunk(0, '{"city":'),
        call_chunk(0, '"Paris"}'),
        call_chunk(1, "", "call_b"),
        call_chunk(1, '{"city":"Rome"}'),
        chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events = run(chunks)
    check_canonical(events)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    output = events[-1]["response"]["output"]
    assert [(o["call_id"], o["arguments"]) for o in output] == [
        ("call_a", '{"city":"Paris"}'),
        ("call_b", '{"city":"Rome"}'),
    ]
    assert events[-1]["response"]["usage"]["total_tokens"] == 10


def test_text_then_call_closes_the_message_first() -> None:
    chunks = [
        chunk({"role": "assistant", "content": "Let me look."}),
        call_chunk(0, '{"city":"Oslo"}', "call_a"),
        chunk({}, "tool_calls"),
    ]
    events = run(chunks)
    check_canonical(events)
    assert types(events)[2:] == [
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert [e["output_index"] for e in events if e["type"].endswith("output_item.added")] == [0, 1]


def test_refusal_stream_uses_refusal_events() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None, "refusal": ""}),
        chunk({"refusal": "I can't"}),
        chunk({"refusal": " help."}),
        chunk({}, "stop"),
    ]
    events = run(chunks)
    check_canonical(events)
    assert types(events)[3:-1] == [
        "content_part.added",
        "refusal.delta",
        "refusal.delta",
        "refusal.done",
        "content_part.done",
        "output_item.done",
    ]
    assert events[3]["part"] == {"type": "refusal", "refusal": ""}
    assert events[-1]["response"]["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help."}
    ]


def test_length_stream_ends_incomplete() -> None:
    chunks = [chunk({"content": "Cut"}), chunk({}, "length"), USAGE_CHUNK]
    events = run(chunks)
    check_canonical(events)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"
    assert final["response"]["usage"]["output_tokens"] == 3


def test_call_name_arriving_late_holds_the_item_back() -> None:
    nameless: Json = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"arguments": '{"ci'},
    }
    named = {"index": 0, "function": {"name": "get_weather", "arguments": 'ty":"X"}'}}
    events = run(
        [chunk({"tool_calls": [nameless]}), chunk({"tool_calls": [named]}), chunk({}, "tool_calls")]
    )
    check_canonical(events)
    assert events[2]["item"]["name"] == "get_weather"
    # What came before the name goes out with it, in one delta.
    assert [e["delta"] for e in events if e["type"].endswith("arguments.delta")] == ['{"city":"X"}']


def test_a_call_resumed_after_the_next_began_is_a_stream_error() -> None:
    translator = ChatStreamTranslator({}, response_id=RID, created_at=1)
    translator.feed(call_chunk(0, "{}", "call_a"))
    translator.feed(call_chunk(1, "{}", "call_b"))
    with pytest.raises(ChatStreamError):
        translator.feed(call_chunk(0, "more"))


def test_fail_ends_with_response_failed_next_in_sequence() -> None:
    translator = ChatStreamTranslator({"model": "m"}, response_id=RID, created_at=1)
    events = translator.start() + translator.feed(chunk({"content": "Hal"}))
    (failed,) = translator.fail("upstream_error", "cut")
    assert failed["type"] == "response.failed"
    assert failed["sequence_number"] == events[-1]["sequence_number"] + 1
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "upstream_error", "message": "cut"}


def test_only_the_first_choice_is_translated() -> None:
    other = chunk({"content": "other"})
    other["choices"][0]["index"] = 1
    events = run([chunk({"content": "first"}), other, chunk({}, "stop")])
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "first"
