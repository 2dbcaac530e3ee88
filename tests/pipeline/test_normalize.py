"""Body rewrites: Chat-style input to Responses, provider rules and request-field policies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.pipeline.normalize import (
    KNOWN_CREATE_FIELDS,
    apply_policy,
    apply_provider_rules,
    normalize_request,
)
from gateway.schemas import Validators, load_validators

CHAT_BODY: dict[str, Any] = {
    "model": "gpt-4.1",
    "instructions": "Be brief.",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {
            "role": "user",
            "name": "ada",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "refusal": None,
            "reasoning_content": "hidden",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"cat"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "assistant", "content": "C'est un chat."},
    ],
    "tools": [{"type": "web_search_preview", "search_content_types": ["text"]}],
    "tool_choice": {"type": "web_search_preview"},
}


@pytest.fixture(scope="module")
def validators() -> Validators:
    return load_validators()


def test_chat_body_becomes_a_valid_responses_body(validators: Validators) -> None:
    body = copy.deepcopy(CHAT_BODY)
    assert normalize_request(body) is True
    assert "messages" not in body
    assert body["instructions"] == "Be brief.\n\nYou are helpful.\n\nAnswer in French."
    assert body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
            ],
        },
        {"role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"q":"cat"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        {"role": "assistant", "content": "C'est un chat."},
    ]
    assert body["tools"] == [{"type": "web_search"}]
    assert body["tool_choice"] == {"type": "web_search"}
    validators.create_response(body)


def test_normalizing_twice_changes_nothing_more() -> None:
    body = copy.deepcopy(CHAT_BODY)
    normalize_request(body)
    again = copy.deepcopy(body)
    assert normalize_request(again) is False
    assert again == body


def test_responses_body_is_left_untouched() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "hello", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
        "tool_choice": {"type": "function", "name": "f"},
    }
    before = copy.deepcopy(body)
    input_list = body["input"]
    assert normalize_request(body) is False
    assert body == before
    assert body["input"] is input_list


def test_string_input_is_untouched() -> None:
    body = {"model": "m", "input": "hello"}
    assert normalize_request(body) is False


def test_messages_without_system_keep_instructions_absent() -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert normalize_request(body) is True
    assert body == {"model": "m", "input": [{"role": "user", "content": "hi"}]}


def test_system_only_messages_give_empty_input() -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "system", "content": "s"}]}
    normalize_request(body)
    assert body == {"model": "m", "input": [], "instructions": "s"}


def test_messages_with_input_are_left_for_the_rules() -> None:
    body: dict[str, Any] = {"model": "m", "input": "x", "messages": [{"role": "user"}]}
    assert normalize_request(body) is False
    assert "messages" in body


def test_null_messages_are_dropped() -> None:
    body: dict[str, Any] = {"model": "m", "input": "x", "messages": None}
    assert normalize_request(body) is True
    assert body == {"model": "m", "input": "x"}


def test_assistant_string_content_stays_as_sent() -> None:
    # A string is valid assistant content for the Responses API; rewriting it would only
    # cost a re-encoding of the body.
    body: dict[str, Any] = {"input": [{"role": "assistant", "content": "hi", "type": "message"}]}
    assert normalize_request(body) is False
    assert body["input"] == [{"role": "assistant", "content": "hi", "type": "message"}]


@pytest.mark.parametrize("kind", ["text", "input_text"])
def test_assistant_text_parts_become_output_text(kind: str) -> None:
    body: dict[str, Any] = {
        "input": [
            {
                "role": "assistant",
                "content": [{"type": kind, "text": "a"}, {"type": "refusal", "refusal": "no"}],
            }
        ]
    }
    assert normalize_request(body) is True
    assert body["input"][0]["content"] == [
        {"type": "output_text", "text": "a", "annotations": []},
        {"type": "refusal", "refusal": "no"},
    ]


@pytest.mark.parametrize("content", [None, "", []], ids=["none", "empty_string", "empty_list"])
def test_assistant_with_only_tool_calls_yields_only_function_calls(content: Any) -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": {"x": 1}}},
    ]
    body: dict[str, Any] = {
        "input": [{"role": "assistant", "content": content, "tool_calls": calls}]
    }
    assert normalize_request(body) is True
    assert body["input"] == [
        {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "b", "arguments": '{"x": 1}'},
    ]


def test_tool_message_becomes_function_call_output() -> None:
    body: dict[str, Any] = {
        "input": [
            {
                "role": "tool",
                "tool_call_id": "c",
                "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "2"}],
            }
        ]
    }
    assert normalize_request(body) is True
    assert body["input"] == [{"type": "function_call_output", "call_id": "c", "output": "42"}]


def test_tool_message_without_call_id_is_400() -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]
    }
    with pytest.raises(InvalidRequestError) as caught:
        normalize_request(body)
    assert (caught.value.param, caught.value.code) == (
        "messages[1].tool_call_id",
        "missing_required_parameter",
    )


def test_tool_call_without_name_is_400() -> None:
    body: dict[str, Any] = {
        "input": [{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "function": {}}]}]
    }
    with pytest.raises(InvalidRequestError) as caught:
        normalize_request(body)
    assert caught.value.param == "input[0].tool_calls[0].function.name"


@pytest.mark.parametrize(
    "key", ["reasoning_content", "reasoning_details", "function_call", "tool_calls"]
)
def test_chat_keys_are_stripped_from_input_messages(key: str) -> None:
    body: dict[str, Any] = {"input": [{"role": "user", "content": "hi", key: None}]}
    assert normalize_request(body) is True
    assert body["input"] == [{"role": "user", "content": "hi"}]


def test_user_chat_parts_become_input_parts() -> None:
    body: dict[str, Any] = {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    {"type": "image_url", "image_url": "https://x/y.png"},
                    {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
                    {"type": "input_text", "text": "kept"},
                ],
            }
        ]
    }
    assert normalize_request(body) is True
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "auto"},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
        {"type": "input_file", "file_id": "file-1", "filename": "a.pdf"},
        {"type": "input_text", "text": "kept"},
    ]


@pytest.mark.parametrize("kind", ["web_search_preview", "web_search_preview_2025_03_11"])
def test_web_search_preview_becomes_web_search(kind: str) -> None:
    body: dict[str, Any] = {
        "tools": [{"type": kind, "search_context_size": "low"}],
        "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": kind}]},
    }
    assert normalize_request(body) is True
    assert body["tools"] == [{"type": "web_search", "search_context_size": "low"}]
    assert body["tool_choice"]["tools"] == [{"type": "web_search"}]


def test_chat_style_function_tool_is_flattened(validators: Validators) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }
    assert normalize_request(body) is True
    assert body["tools"] == [{"type": "function", "name": "f", "parameters": {}, "strict": True}]
    assert body["tool_choice"] == {"type": "function", "name": "f"}
    validators.create_response(body)


def test_drop_fields_are_removed() -> None:
    body: dict[str, Any] = {"model": "m", "prompt_cache_key": "k", "user": "u"}
    changed = apply_provider_rules(
        body, drop_fields=["user", "safety_identifier"], unsupported_tools=[], refuse_file_ids=False
    )
    assert changed is True
    assert body == {"model": "m", "prompt_cache_key": "k"}
    again = apply_provider_rules(
        body, drop_fields=["user"], unsupported_tools=[], refuse_file_ids=False
    )
    assert again is False


def test_unsupported_tool_type_is_400() -> None:
    body: dict[str, Any] = {"tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}
    with pytest.raises(InvalidRequestError) as caught:
        apply_provider_rules(
            body, drop_fields=(), unsupported_tools=("web_search",), refuse_file_ids=False
        )
    assert (caught.value.param, caught.value.code) == ("tools[1].type", "invalid_value")


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_file", "file_id": "file-1"}, "input[0].content[1].file_id"),
        ({"type": "input_image", "file_id": "file-2"}, "input[0].content[1].file_id"),
    ],
    ids=["input_file", "input_image"],
)
def test_file_ids_are_refused_when_the_upstream_cannot_resolve_them(
    part: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}, part]}]
    }
    with pytest.raises(InvalidRequestError) as caught:
        apply_provider_rules(body, drop_fields=(), unsupported_tools=(), refuse_file_ids=True)
    assert (caught.value.param, caught.value.code) == (param, "invalid_value")
    assert (
        apply_provider_rules(body, drop_fields=(), unsupported_tools=(), refuse_file_ids=False)
        is False
    )


def test_file_id_in_function_call_output_is_refused() -> None:
    body: dict[str, Any] = {
        "input": [
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_file", "file_id": "file-1"}],
            }
        ]
    }
    with pytest.raises(InvalidRequestError) as caught:
        apply_provider_rules(body, drop_fields=(), unsupported_tools=(), refuse_file_ids=True)
    assert caught.value.param == "input[0].output[0].file_id"


def _policy(body: dict[str, Any], **overrides: str) -> bool:
    options = {"store": "pass", "truncation": "pass", "unknown_fields": "forward", **overrides}
    return apply_policy(body, known_fields=KNOWN_CREATE_FIELDS, **options)


def test_pass_policies_change_nothing() -> None:
    body: dict[str, Any] = {"model": "m", "store": True, "truncation": "auto", "new_field": 1}
    assert _policy(body) is False
    assert body == {"model": "m", "store": True, "truncation": "auto", "new_field": 1}


@pytest.mark.parametrize("store", [None, True], ids=["absent", "true"])
def test_store_force_false(store: bool | None) -> None:
    body: dict[str, Any] = {"model": "m"} if store is None else {"model": "m", "store": store}
    assert _policy(body, store="force_false") is True
    assert body["store"] is False
    assert _policy(body, store="force_false") is False


def test_store_refuse_true() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _policy({"store": True}, store="refuse_true")
    assert (caught.value.param, caught.value.code) == ("store", "invalid_value")
    assert _policy({"store": False}, store="refuse_true") is False
    assert _policy({}, store="refuse_true") is False


def test_truncation_refuse() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _policy({"truncation": "auto"}, truncation="refuse")
    assert (caught.value.param, caught.value.code) == ("truncation", "invalid_value")
    assert _policy({"truncation": "disabled"}, truncation="refuse") is False
    assert _policy({"truncation": None}, truncation="refuse") is False


def test_unknown_fields_refuse() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        _policy({"model": "m", "background_options": {}, "frobnicate": 1}, unknown_fields="refuse")
    error = caught.value
    assert (error.param, error.code, error.message) == (
        "frobnicate",
        "unknown_parameter",
        "Unknown parameter: 'frobnicate'.",
    )
    assert _policy({"model": "m", "messages": [], "image": {}}, unknown_fields="refuse") is False
