"""Rules a JSON Schema cannot say: exclusive fields, the include allow-list, metadata limits."""

from __future__ import annotations

from typing import Any, Final

from gateway.errors import InvalidRequestError
from gateway.schemas import invalid_type

INCLUDE_VALUES: Final = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
_INCLUDE_SET: Final = frozenset(INCLUDE_VALUES)

METADATA_MAX_PAIRS: Final = 16
METADATA_MAX_KEY: Final = 64
METADATA_MAX_VALUE: Final = 512


def check_create_rules(body: dict[str, Any], *, async_job: bool = False) -> None:
    """Raise InvalidRequestError for the first rule a CreateResponse body breaks."""
    if body.get("messages") is not None:
        _check_messages(body)
    if body.get("conversation") is not None and body.get("previous_response_id") is not None:
        raise InvalidRequestError(
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    include = body.get("include")
    if include is not None:
        _check_include(include)
    metadata = body.get("metadata")
    if metadata is not None:
        check_metadata(metadata)
    stream = body.get("stream")
    if body.get("stream_options") is not None and stream is not True:
        raise InvalidRequestError(
            "Invalid value for 'stream_options': 'stream_options' is only allowed when "
            "'stream' is true.",
            param="stream_options",
            code="invalid_value",
        )
    if async_job and stream is True:
        raise InvalidRequestError(
            "Invalid value for 'stream': asynchronous jobs (x-bf-async) cannot stream; "
            "poll the job instead.",
            param="stream",
            code="invalid_value",
        )


def _check_messages(body: dict[str, Any]) -> None:
    if body.get("input") is not None:
        raise InvalidRequestError(
            "Mutually exclusive parameters: Ensure you are only providing one of: "
            "'input' or 'messages'.",
            param="messages",
            code="mutually_exclusive_parameters",
        )
    if not isinstance(body["messages"], list):
        raise invalid_type("messages", "an array", body["messages"])


def _check_include(include: Any) -> None:
    if not isinstance(include, list):
        raise invalid_type("include", "an array", include)
    for i, value in enumerate(include):
        if not isinstance(value, str) or value not in _INCLUDE_SET:
            supported = ", ".join(f"'{v}'" for v in INCLUDE_VALUES[:-1])
            raise InvalidRequestError(
                f"Invalid value: '{_short(value)}'. Supported values are: {supported}, "
                f"and '{INCLUDE_VALUES[-1]}'.",
                param=f"include[{i}]",
                code="invalid_value",
            )


def check_metadata(value: Any, param: str = "metadata") -> None:
    """OpenAI's metadata limits: at most 16 pairs, keys <= 64 and string values <= 512 chars."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    if len(value) > METADATA_MAX_PAIRS:
        raise InvalidRequestError(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties "
            "instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise InvalidRequestError(
                f"Invalid '{param}': key '{_short(key)}' is too long. Expected a key with "
                f"maximum length {METADATA_MAX_KEY}, but got a key with length {len(key)} "
                "instead.",
                param=param,
                code="string_above_max_length",
            )
        where = f"{param}.{key}"
        if not isinstance(item, str):
            raise invalid_type(where, "a string", item)
        if len(item) > METADATA_MAX_VALUE:
            raise InvalidRequestError(
                f"Invalid '{where}': string too long. Expected a string with maximum length "
                f"{METADATA_MAX_VALUE}, but got a string with length {len(item)} instead.",
                param=where,
                code="string_above_max_length",
            )


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
