"""The CreateResponse rules a schema cannot say, each with OpenAI's param and code."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.pipeline.rules import INCLUDE_VALUES, check_create_rules, check_metadata


def _error(body: dict[str, Any], *, async_job: bool = False) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        check_create_rules({"model": "m", **body}, async_job=async_job)
    return caught.value


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hi"},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"input": "hi", "messages": None},
        {"conversation": "conv_1", "previous_response_id": None},
        {"conversation": None, "previous_response_id": "resp_1"},
        {"include": []},
        {"include": list(INCLUDE_VALUES)},
        {"include": None, "metadata": None, "stream_options": None},
        {"metadata": {f"k{i}": "v" * 512 for i in range(16)}},
        {"metadata": {"k" * 64: ""}},
        {"stream": True, "stream_options": {"include_obfuscation": False}},
    ],
    ids=[
        "input",
        "messages",
        "null_messages",
        "conversation_only",
        "previous_response_only",
        "include_empty",
        "include_all",
        "nulls",
        "metadata_at_limits",
        "metadata_long_key",
        "stream_options_with_stream",
    ],
)
def test_valid_bodies_pass(body: dict[str, Any]) -> None:
    check_create_rules({"model": "m", **body})


def test_input_and_messages_together_is_400() -> None:
    error = _error({"input": "a", "messages": []})
    assert (error.param, error.code, error.status) == (
        "messages",
        "mutually_exclusive_parameters",
        400,
    )


def test_messages_must_be_a_list() -> None:
    error = _error({"messages": "hi"})
    assert (error.param, error.code) == ("messages", "invalid_type")
    assert (
        error.message == "Invalid type for 'messages': expected an array, but got a string instead."
    )


def test_conversation_and_previous_response_id_together_is_400() -> None:
    error = _error({"conversation": {"id": "conv_1"}, "previous_response_id": "resp_1"})
    assert (error.param, error.code) == ("conversation", "mutually_exclusive_parameters")
    assert "'previous_response_id' or 'conversation'" in error.message


def test_include_value_outside_the_allow_list() -> None:
    error = _error({"include": ["reasoning.encrypted_content", "file_search_call.result"]})
    assert (error.param, error.code) == ("include[1]", "invalid_value")
    assert error.message.startswith("Invalid value: 'file_search_call.result'. Supported values")


def test_include_must_be_a_list() -> None:
    error = _error({"include": "reasoning.encrypted_content"})
    assert (error.param, error.code) == ("include", "invalid_type")


def test_include_with_unhashable_value() -> None:
    error = _error({"include": [["x"]]})
    assert (error.param, error.code) == ("include[0]", "invalid_value")


def test_seventeen_metadata_pairs_is_openais_error() -> None:
    error = _error({"metadata": {f"k{i}": "v" for i in range(17)}})
    assert (error.param, error.code) == ("metadata", "object_above_max_properties")
    assert error.message == (
        "Invalid 'metadata': too many properties. Expected an object with at most 16 "
        "properties, but got an object with 17 properties instead."
    )


def test_metadata_key_longer_than_64() -> None:
    error = _error({"metadata": {"k" * 65: "v"}})
    assert (error.param, error.code) == ("metadata", "string_above_max_length")


def test_metadata_value_longer_than_512() -> None:
    error = _error({"metadata": {"note": "v" * 513}})
    assert (error.param, error.code) == ("metadata.note", "string_above_max_length")
    assert error.message == (
        "Invalid 'metadata.note': string too long. Expected a string with maximum length 512, "
        "but got a string with length 513 instead."
    )


def test_metadata_value_must_be_a_string() -> None:
    error = _error({"metadata": {"n": 1}})
    assert (error.param, error.code) == ("metadata.n", "invalid_type")


def test_metadata_must_be_an_object() -> None:
    error = _error({"metadata": ["a"]})
    assert (error.param, error.code) == ("metadata", "invalid_type")


def test_check_metadata_names_the_given_param() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_metadata({"a": 5}, param="items[0].metadata")
    assert caught.value.param == "items[0].metadata.a"
    check_metadata(None)
    check_metadata({})


@pytest.mark.parametrize("stream", [None, False], ids=["no_stream", "stream_false"])
def test_stream_options_without_stream_is_400(stream: bool | None) -> None:
    body: dict[str, Any] = {"stream_options": {"include_obfuscation": False}}
    if stream is not None:
        body["stream"] = stream
    error = _error(body)
    assert (error.param, error.code) == ("stream_options", "invalid_value")


def test_async_job_cannot_stream() -> None:
    error = _error({"stream": True}, async_job=True)
    assert (error.param, error.code) == ("stream", "invalid_value")
    check_create_rules({"model": "m", "stream": False}, async_job=True)
