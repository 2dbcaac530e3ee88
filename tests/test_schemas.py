"""The generated request schemas: what they accept, and the OpenAI-style errors they give."""

from __future__ import annotations

import copy
import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import InvalidRequestError
from gateway.pipeline.normalize import KNOWN_CREATE_FIELDS, normalize_request
from gateway.pipeline.rules import check_create_rules
from gateway.schemas import SCHEMA_NAMES, Validators, default_schema_dir, load_validators

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec" / "openai-responses.openapi.yaml"

STRICT_PARAMETERS = {
    "properties": {
        "city": {"title": "City", "type": "string"},
        "days": {"title": "Days", "type": "integer"},
    },
    "required": ["city", "days"],
    "title": "GetWeather",
    "type": "object",
    "additionalProperties": False,
}

# What openai-python 3.57 sends for responses.parse(...) with a pydantic text_format,
# captured from the SDK against a mock transport.
SDK_PARSE_BODY: dict[str, Any] = {
    "model": "gpt-5.4",
    "background_options": {"completion_window": "soonest"},
    "include": [],
    "input": [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "https://x/y.png"},
            ],
        },
        {"role": "assistant", "content": "prev"},
    ],
    "metadata": {"a": "b"},
    "reasoning": {"effort": "low", "summary": "auto"},
    "store": False,
    "text": {
        "format": {
            "type": "json_schema",
            "strict": True,
            "name": "Answer",
            "schema": STRICT_PARAMETERS,
        }
    },
    "tools": [
        {"type": "function", "name": "get_weather", "parameters": STRICT_PARAMETERS, "strict": True}
    ],
}

TYPED_CONVERSATION: dict[str, Any] = {
    "model": "gpt-4.1",
    "instructions": "Be brief.",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these?"},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,AAAA",
                    "detail": "high",
                },
                {"type": "input_image", "file_id": "file-123", "detail": "auto"},
                {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;x"},
                {"type": "input_file", "file_url": "https://example.com/a.pdf"},
            ],
        },
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "A cat.", "annotations": []}],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "Replayed."}]},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "thinking"}],
            "encrypted_content": "gAAAA",
        },
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        {"type": "item_reference", "id": "msg_0"},
        {"id": "msg_00"},
        {"type": "configuration_update", "reasoning": {"effort": "high"}},
    ],
    "tools": [
        {"type": "function", "name": "get_weather", "parameters": STRICT_PARAMETERS},
        {"type": "web_search", "search_context_size": "low"},
        {
            "type": "file_search",
            "vector_store_ids": ["vs_1"],
            "filters": {"type": "and", "filters": [{"type": "eq", "key": "lang", "value": "en"}]},
        },
        {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com"},
    ],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "parallel_tool_calls": False,
    "conversation": None,
    "previous_response_id": "resp_1",
    "prompt_cache_options": {"ttl": "12h"},
    "context_management": [{"type": "compaction", "compact_threshold": 2000}],
    "stream": True,
    "stream_options": {"include_obfuscation": False},
    "temperature": 0,
    "top_p": 1,
    "max_output_tokens": 16,
    "truncation": "auto",
    "service_tier": "flex",
    "safety_identifier": "user-1",
}

VALID_BODIES = {
    "sdk_parse": SDK_PARSE_BODY,
    "typed_conversation": TYPED_CONVERSATION,
    "string_input": {"model": "gpt-4.1", "input": "Hello"},
    "easy_messages_without_type": {
        "model": "m",
        "input": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "phase": "final_answer"},
        ],
    },
    "unknown_top_level_fields": {
        "model": "m",
        "input": "x",
        "access_programs": {"cyber": "standard"},
        "image": {"context_compression": "auto"},
        "some_future_field": [1, {"a": None}],
    },
    "conversation_object_and_prompt": {
        "model": "m",
        "conversation": {"id": "conv_1"},
        "prompt": {"id": "pmpt_1", "variables": {"name": "Ada"}},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
    },
    "nulls_everywhere": {
        "model": "m",
        "input": "x",
        "instructions": None,
        "metadata": None,
        "temperature": None,
        "top_logprobs": None,
        "reasoning": None,
        "include": None,
        "tool_choice": "none",
    },
    "web_search_tool_choice_after_normalization": {
        "model": "m",
        "tools": [{"type": "web_search"}],
        "tool_choice": {"type": "web_search"},
    },
}


@pytest.fixture(scope="module")
def validators() -> Validators:
    return load_validators()


def _error(check: Any, body: dict[str, Any]) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        check(body)
    return caught.value


@pytest.mark.parametrize("body", list(VALID_BODIES.values()), ids=list(VALID_BODIES))
def test_valid_create_bodies_pass(validators: Validators, body: dict[str, Any]) -> None:
    validators.create_response(body)
    check_create_rules(body)


INVALID = [
    pytest.param(
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}, {"type": "imagez"}],
                }
            ]
        },
        "input[0].content[1].type",
        "invalid_value",
        "Invalid value: 'imagez'. Supported values are: 'input_text', 'input_image', and "
        "'input_file'.",
        id="bad_content_part_type",
    ),
    pytest.param(
        {"temperature": 5},
        "temperature",
        "decimal_above_max_value",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
        "but got 5 instead.",
        id="temperature_above_max",
    ),
    pytest.param(
        {"top_p": -0.5},
        "top_p",
        "decimal_below_min_value",
        "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, "
        "but got -0.5 instead.",
        id="top_p_below_min",
    ),
    pytest.param(
        {"max_output_tokens": 3},
        "max_output_tokens",
        "integer_below_min_value",
        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
        "but got 3 instead.",
        id="max_output_tokens_below_min",
    ),
    pytest.param(
        {"top_logprobs": 21},
        "top_logprobs",
        "integer_above_max_value",
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
        "but got 21 instead.",
        id="top_logprobs_above_max",
    ),
    pytest.param(
        {"temperature": "hot"},
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        id="temperature_type",
    ),
    pytest.param(
        {"input": 5},
        "input",
        "invalid_type",
        "Invalid type for 'input': expected one of a string or an array, but got an integer "
        "instead.",
        id="input_type",
    ),
    pytest.param(
        {"input": [{"role": "user"}]},
        "input[0].content",
        "missing_required_parameter",
        "Missing required parameter: 'input[0].content'.",
        id="missing_content",
    ),
    pytest.param(
        {"input": [{"content": "hi"}]},
        "input[0].role",
        "missing_required_parameter",
        "Missing required parameter: 'input[0].role'.",
        id="missing_role",
    ),
    pytest.param(
        {"input": [{"type": "message", "role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
        "missing_required_parameter",
        "Missing required parameter: 'input[0].content[0].text'.",
        id="missing_part_text",
    ),
    pytest.param(
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
        "input[0].arguments",
        "invalid_type",
        "Invalid type for 'input[0].arguments': expected a string, but got an object instead.",
        id="function_call_arguments_type",
    ),
    pytest.param(
        {"input": [{"role": "bot", "content": "x"}]},
        "input[0].role",
        "invalid_value",
        "Invalid value: 'bot'. Supported values are: 'user', 'assistant', 'system', and "
        "'developer'.",
        id="bad_role",
    ),
    pytest.param(
        {"input": [{"type": "function_call_output", "call_id": "", "output": "x"}]},
        "input[0].call_id",
        "string_below_min_length",
        "Invalid 'input[0].call_id': string too short. Expected a string with minimum length 1, "
        "but got an empty string instead.",
        id="empty_call_id",
    ),
    pytest.param(
        {"safety_identifier": "x" * 70},
        "safety_identifier",
        "string_above_max_length",
        "Invalid 'safety_identifier': string too long. Expected a string with maximum length "
        "64, but got a string with length 70 instead.",
        id="safety_identifier_too_long",
    ),
    pytest.param(
        {"safety_identifier": "x" * 5000},
        "safety_identifier",
        "string_above_max_length",
        "Invalid 'safety_identifier': string too long. Expected a string with maximum length "
        "64, but got a string with length 5000 instead.",
        id="long_string_keeps_its_length",
    ),
    pytest.param(
        {"context_management": []},
        "context_management",
        "array_below_min_length",
        "Invalid 'context_management': array too short. Expected an array with minimum length "
        "1, but got an empty array instead.",
        id="empty_context_management",
    ),
    pytest.param(
        {"metadata": {"a": 1}},
        "metadata.a",
        "invalid_type",
        "Invalid type for 'metadata.a': expected a string, but got an integer instead.",
        id="metadata_value_type",
    ),
    pytest.param(
        {"tools": [{"type": "function", "name": "f"}, {"type": "functionz", "name": "f"}]},
        "tools[1].type",
        "invalid_value",
        None,
        id="bad_tool_type",
    ),
    pytest.param(
        {"tools": [{"type": "function"}]},
        "tools[0].name",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].name'.",
        id="tool_without_name",
    ),
    pytest.param(
        {
            "tools": [
                {
                    "type": "file_search",
                    "vector_store_ids": [],
                    "filters": {"type": "eq", "key": "a", "value": 1, "zz": 1},
                }
            ]
        },
        "tools[0].filters.zz",
        "unknown_parameter",
        "Unknown parameter: 'tools[0].filters.zz'.",
        id="closed_nested_object",
    ),
    pytest.param(
        {"tool_choice": "bogus"},
        "tool_choice",
        "invalid_value",
        "Invalid value: 'bogus'. Supported values are: 'none', 'auto', and 'required'.",
        id="tool_choice_value",
    ),
    pytest.param(
        {"tool_choice": {"type": "function"}},
        "tool_choice.name",
        "missing_required_parameter",
        "Missing required parameter: 'tool_choice.name'.",
        id="tool_choice_function_name",
    ),
    pytest.param(
        {"text": {"format": {"type": "json_schema", "name": "x"}}},
        "text.format.schema",
        "missing_required_parameter",
        "Missing required parameter: 'text.format.schema'.",
        id="json_schema_without_schema",
    ),
    pytest.param(
        {"reasoning": {"effort": "ultra"}},
        "reasoning.effort",
        "invalid_value",
        None,
        id="reasoning_effort",
    ),
    pytest.param(
        {"include": ["bogus"]},
        "include[0]",
        "invalid_value",
        None,
        id="include_value",
    ),
    pytest.param(
        {"conversation": 5},
        "conversation",
        "invalid_type",
        "Invalid type for 'conversation': expected one of a string or an object, "
        "but got an integer instead.",
        id="conversation_type",
    ),
]


@pytest.mark.parametrize(("body", "param", "code", "message"), INVALID)
def test_invalid_create_bodies_name_the_field(
    validators: Validators, body: dict[str, Any], param: str, code: str, message: str | None
) -> None:
    error = _error(validators.create_response, {"model": "m", **body})
    assert (error.param, error.code) == (param, code)
    assert error.status == 400
    if message is not None:
        assert error.message == message


def test_first_bad_item_of_a_long_input_is_named_quickly(validators: Validators) -> None:
    good = {"role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    bad = {"role": "user", "content": [{"type": "input_text", "text": 5}]}
    body = {"model": "m", "input": [good] * 3000 + [bad] * 500}
    started = time.perf_counter()
    error = _error(validators.create_response, body)
    assert time.perf_counter() - started < 0.5
    assert error.param == "input[3000].content[0].text"


def test_huge_invalid_string_is_explained_quickly(validators: Validators) -> None:
    body = {"model": "m", "input": [{"role": "user", "content": "x" * 5_000_000, "phase": 5}]}
    started = time.perf_counter()
    error = _error(validators.create_response, body)
    assert time.perf_counter() - started < 0.5
    assert (error.param, error.code) == ("input[0].phase", "invalid_type")


@pytest.mark.parametrize("depth", [10, 400], ids=["shallow", "deep"])
def test_deeply_nested_invalid_body_is_a_quick_400(validators: Validators, depth: int) -> None:
    filters: dict[str, Any] = {"type": "eq", "key": "a", "value": 1, "zz": 1}
    for _ in range(depth):
        filters = {"type": "and", "filters": [filters]}
    body = {
        "model": "m",
        "tools": [{"type": "file_search", "vector_store_ids": [], "filters": filters}],
    }
    started = time.perf_counter()
    error = _error(validators.create_response, body)
    assert time.perf_counter() - started < 0.5
    assert error.param is not None
    assert error.param.startswith("tools")


def test_nesting_beyond_the_validator_limit_is_a_400(validators: Validators) -> None:
    content: Any = "x"
    for _ in range(1000):
        content = [content]
    error = _error(validators.create_response, {"input": [{"role": "user", "content": content}]})
    assert error.param == "input"


def test_input_tokens_body(validators: Validators) -> None:
    validators.input_tokens({})
    validators.input_tokens({"model": "m", "input": "x", "personality": "friendly", "future": 1})
    error = _error(validators.input_tokens, {"input": [{"role": "user"}]})
    assert error.param == "input[0].content"


def test_conversation_create_body(validators: Validators) -> None:
    validators.conversation_create({})
    validators.conversation_create({"items": [{"role": "user", "content": "x"}], "metadata": {}})
    error = _error(
        validators.conversation_create, {"items": [{"role": "user", "content": "x"}] * 21}
    )
    assert (error.param, error.code) == ("items", "array_above_max_length")
    assert error.message == (
        "Invalid 'items': array too long. Expected an array with maximum length 20, "
        "but got an array with length 21 instead."
    )


def test_conversation_update_needs_metadata(validators: Validators) -> None:
    validators.conversation_update({"metadata": None})
    validators.conversation_update({"metadata": {"k": "v"}})
    error = _error(validators.conversation_update, {})
    assert (error.param, error.code) == ("metadata", "missing_required_parameter")


def test_conversation_items_needs_items(validators: Validators) -> None:
    validators.conversation_items({"items": [{"type": "item_reference", "id": "msg_1"}]})
    error = _error(validators.conversation_items, {})
    assert (error.param, error.code) == ("items", "missing_required_parameter")
    error = _error(validators.conversation_items, {"items": [{"role": "user", "content": 5}]})
    assert error.param == "items[0].content"


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_plain_draft_2020_12(name: str) -> None:
    schema = json.loads((default_schema_dir() / f"{name}.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema.get("additionalProperties", True) is not False
    for node in _walk(schema):
        assert not {"oneOf", "discriminator", "nullable", "$recursiveRef"} & node.keys()
        assert not [key for key in node if key.startswith("x-")]
        # explaining an error shrinks arrays to one item, which needs minItems <= 1
        assert node.get("minItems", 0) <= 1


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_schemas", ROOT / "scripts/build_schemas.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SPEC.exists(), reason="the OpenAPI file lives in ../shared")
def test_committed_schemas_match_the_build_script() -> None:
    script = _build_script()
    built = script.build_all(script.load_spec(SPEC))
    for name in SCHEMA_NAMES:
        committed = (default_schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8")
        assert script.dump(built[name]) == committed, f"re-run scripts/build_schemas.py ({name})"


def test_known_fields_cover_the_schema() -> None:
    schema = json.loads((default_schema_dir() / "create_response.schema.json").read_text())
    extras = {"background_options", "image", "access_programs", "messages"}
    assert set(schema["properties"]) | extras == KNOWN_CREATE_FIELDS


def test_load_validators_from_a_directory(tmp_path: Path) -> None:
    for name in SCHEMA_NAMES:
        source = default_schema_dir() / f"{name}.schema.json"
        (tmp_path / source.name).write_text(source.read_text())
    load_validators(tmp_path).create_response({"model": "m"})


# Property test: random and mutated bodies only ever raise InvalidRequestError, with a param.

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "user",
            "assistant",
            "tool",
            "message",
            "input_text",
            "text",
            "function_call",
            "image_url",
            "web_search_preview",
            "auto",
            "",
        ]
    )
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "role",
                    "content",
                    "text",
                    "id",
                    "call_id",
                    "name",
                    "arguments",
                    "output",
                    "tool_calls",
                    "function",
                    "image_url",
                    "url",
                    "file_id",
                    "tool_call_id",
                    "x",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
SEEDS = [
    *VALID_BODIES.values(),
    {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "t"},
                    {"type": "image_url", "image_url": {"url": "u"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
    },
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*path, i))
    return out


@st.composite
def mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(body)[1:] or [("model",)]))
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(sorted(KNOWN_CREATE_FIELDS)))] = draw(JSON)
        else:
            parent[path[-1]] = draw(JSON)
    return body


RANDOM_BODIES = st.dictionaries(st.sampled_from(sorted(KNOWN_CREATE_FIELDS)), JSON, max_size=5)


def _check_everything(validators: Validators, body: dict[str, Any]) -> None:
    keys = set(body)
    try:
        normalize_request(body)
        keys |= set(body)
        validators.create_response(body)
        check_create_rules(body)
    except InvalidRequestError as caught:
        error = caught
    else:
        return
    assert error.status == 400
    assert error.message
    assert error.code
    assert error.param, error.message
    assert error.param.split(".")[0].split("[")[0] in keys, error.param


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mutated_bodies())
def test_mutated_bodies_raise_only_invalid_request_errors(
    validators: Validators, body: dict[str, Any]
) -> None:
    _check_everything(validators, body)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=RANDOM_BODIES)
def test_random_bodies_raise_only_invalid_request_errors(
    validators: Validators, body: dict[str, Any]
) -> None:
    _check_everything(validators, body)
