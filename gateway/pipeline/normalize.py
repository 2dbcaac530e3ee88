"""Rewrite a CreateResponse body in place: Chat-style input, provider rules, request-field policies.

Every function returns whether it changed the body; when none did, the caller forwards the
client's original bytes, so the no-op path only reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from gateway.errors import InvalidRequestError

KNOWN_CREATE_FIELDS: Final = frozenset({
    # CreateResponse in the OpenAPI file (schemas/create_response.schema.json).
    "background", "context_management", "conversation", "include", "input", "instructions",
    "max_output_tokens", "max_tool_calls", "metadata", "model", "moderation",
    "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier",
    "service_tier", "store", "stream", "stream_options", "temperature", "text", "tool_choice",
    "tools", "top_logprobs", "top_p", "truncation", "user",
    # Sent by openai-python 3.5x but missing from the OpenAPI file.
    "access_programs", "background_options", "image",
    # Chat-style input, rewritten by normalize_request.
    "messages",
})  # fmt: skip

_PREVIEW_TOOLS: Final = frozenset({"web_search_preview", "web_search_preview_2025_03_11"})
_CHAT_KEYS: Final = frozenset(
    {"reasoning_content", "reasoning_details", "tool_calls", "function_call"}
)
_CHAT_ONLY_KEYS: Final = frozenset({"name", "audio", "annotations", "refusal"})
_CHAT_PARTS: Final = frozenset({"text", "image_url", "file"})
_ASSISTANT_TEXT: Final = frozenset({"text", "input_text"})
_FILE_PARTS: Final = frozenset({"input_file", "input_image"})
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})


def normalize_request(body: dict[str, Any]) -> bool:
    """Chat-isms to Responses: `messages`, preview web search, assistant text, tool messages."""
    changed = False
    messages = body.get("messages")
    if type(messages) is list and body.get("input") is None:
        _messages_to_input(body, messages)
        changed = True
    elif "messages" in body and messages is None:
        del body["messages"]
        changed = True
    else:
        items = body.get("input")
        if type(items) is list and items:
            changed = _normalize_items(items, "input")
    tools = body.get("tools")
    if type(tools) is list and tools:
        changed = _normalize_tools(tools) or changed
    choice = body.get("tool_choice")
    if type(choice) is dict:
        changed = _normalize_tool_choice(body, choice) or changed
    return changed


def _messages_to_input(body: dict[str, Any], messages: list[Any]) -> None:
    del body["messages"]
    system: list[str] = []
    items: list[Any] = []
    for i, message in enumerate(messages):
        if type(message) is not dict:
            items.append(message)
            continue
        if _str(message.get("role")) in _SYSTEM_ROLES:
            text = _joined_text(message.get("content"), "\n\n", f"messages[{i}].content")
            if text:
                system.append(text)
            continue
        message = _from_chat(message)
        items.extend(_normalize_item(message, "messages", i) or (message,))
    body["input"] = items
    existing = body.get("instructions")
    if system and (existing is None or isinstance(existing, str)):
        body["instructions"] = "\n\n".join([existing, *system] if existing else system)


def _from_chat(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if k not in _CHAT_ONLY_KEYS}
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not out.get("content"):
        out["content"] = [{"type": "refusal", "refusal": refusal}]
    return out


def _normalize_items(items: list[Any], field: str) -> bool:
    # The common case changes nothing: scan cheaply, rebuild only from the first hit on.
    start = next((i for i, item in enumerate(items) if _needs_change(item)), -1)
    if start < 0:
        return False
    out = items[:start]
    for i in range(start, len(items)):
        item = items[i]
        new = _normalize_item(item, field, i) if type(item) is dict else None
        if new is None:
            out.append(item)
        else:
            out.extend(new)
    items[:] = out
    return True


def _needs_change(message: Any) -> bool:
    if type(message) is not dict or "role" not in message:
        return False
    role = message["role"]
    if role == "tool" or not _CHAT_KEYS.isdisjoint(message):
        return True
    content = message.get("content")
    # A plain string is valid assistant content for the Responses API: left as sent.
    kinds = _ASSISTANT_TEXT if role == "assistant" else _CHAT_PARTS
    if type(content) is list:
        for part in content:
            if type(part) is dict and _str(part.get("type")) in kinds:
                return True
    return False


def _normalize_item(item: dict[str, Any], field: str, i: int) -> list[Any] | None:
    """The items replacing one input message, or None when it needs no change."""
    role = item.get("role")
    if type(role) is not str or not _needs_change(item):
        return None
    if role == "tool":
        return [_tool_output(item, field, i)]
    content = item.get("content")
    message = {k: v for k, v in item.items() if k not in _CHAT_KEYS}
    if role == "assistant":
        message["content"] = _assistant_content(content)
    elif type(content) is list:
        message["content"] = [_input_part(p) if type(p) is dict else p for p in content]
    calls = item.get("tool_calls") if role == "assistant" else None
    if not calls:
        return [message]
    function_calls = _function_calls(calls, f"{field}[{i}].tool_calls")
    return function_calls if content in (None, "", []) else [message, *function_calls]


def _assistant_content(content: Any) -> Any:
    if type(content) is not list:
        return content
    return [
        {"type": "output_text", "text": p.get("text"), "annotations": []}
        if type(p) is dict and _str(p.get("type")) in _ASSISTANT_TEXT
        else p
        for p in content
    ]


def _input_part(part: dict[str, Any]) -> Any:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text")}
    if kind == "image_url":
        image = part.get("image_url")
        if type(image) is str:
            return {"type": "input_image", "image_url": image, "detail": "auto"}
        if type(image) is dict and "url" in image:
            detail = image.get("detail") or "auto"
            return {"type": "input_image", "image_url": image["url"], "detail": detail}
    if kind == "file" and type(part.get("file")) is dict:
        file = part["file"]
        keep = ("file_id", "file_data", "filename")
        return {"type": "input_file", **{k: file[k] for k in keep if k in file}}
    return part


def _tool_output(item: dict[str, Any], field: str, i: int) -> dict[str, Any]:
    call_id = item.get("tool_call_id")
    if type(call_id) is not str or not call_id:
        raise _missing(f"{field}[{i}].tool_call_id")
    content = item.get("content")
    output: Any
    if type(content) is list and not all(
        type(p) is dict and p.get("type") in ("text", "input_text") for p in content
    ):
        output = [_input_part(p) if type(p) is dict else p for p in content]
    else:
        output = _joined_text(content, "", f"{field}[{i}].content")
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def _function_calls(calls: Any, param: str) -> list[dict[str, Any]]:
    if type(calls) is not list:
        raise InvalidRequestError(
            f"Invalid type for '{param}': expected an array of tool calls.",
            param=param,
            code="invalid_type",
        )
    out: list[dict[str, Any]] = []
    for j, call in enumerate(calls):
        if type(call) is not dict:
            raise _missing(f"{param}[{j}].id")
        function = call.get("function")
        if type(function) is not dict:
            raise _missing(f"{param}[{j}].function")
        call_id, name = call.get("id"), function.get("name")
        if type(call_id) is not str or not call_id:
            raise _missing(f"{param}[{j}].id")
        if type(name) is not str or not name:
            raise _missing(f"{param}[{j}].function.name")
        arguments = function.get("arguments")
        if type(arguments) is not str:
            arguments = _dumps(arguments, f"{param}[{j}].function.arguments")
        out.append(
            {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
        )
    return out


def _joined_text(content: Any, separator: str, param: str) -> str:
    if content is None:
        return ""
    if type(content) is str:
        return content
    if type(content) is list:
        return separator.join(
            p["text"] for p in content if type(p) is dict and type(p.get("text")) is str
        )
    raise InvalidRequestError(
        f"Invalid type for '{param}': expected a string or an array of content parts.",
        param=param,
        code="invalid_type",
    )


def _dumps(value: Any, param: str) -> str:
    if value is None:
        return "{}"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        raise InvalidRequestError(
            f"Invalid type for '{param}': expected a JSON string.", param=param, code="invalid_type"
        ) from None


def _missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _normalize_tools(tools: list[Any]) -> bool:
    changed = False
    for i, tool in enumerate(tools):
        if type(tool) is not dict:
            continue
        kind = _str(tool.get("type"))
        if kind in _PREVIEW_TOOLS:
            # web_search has no search_content_types; OpenAI refuses unknown tool fields.
            tools[i] = {k: v for k, v in tool.items() if k != "search_content_types"}
            tools[i]["type"] = "web_search"
            changed = True
        elif kind == "function" and "name" not in tool and type(tool.get("function")) is dict:
            function = tool["function"]
            keep = ("name", "description", "parameters", "strict")
            tools[i] = {"type": "function", **{k: function[k] for k in keep if k in function}}
            changed = True
    return changed


def _normalize_tool_choice(body: dict[str, Any], choice: dict[str, Any]) -> bool:
    kind = _str(choice.get("type"))
    if kind in _PREVIEW_TOOLS:
        body["tool_choice"] = {**choice, "type": "web_search"}
        return True
    if kind == "function" and "name" not in choice and type(choice.get("function")) is dict:
        body["tool_choice"] = {"type": "function", "name": choice["function"].get("name")}
        return True
    allowed = choice.get("tools") if kind == "allowed_tools" else None
    if type(allowed) is list and any(
        type(t) is dict and _str(t.get("type")) in _PREVIEW_TOOLS for t in allowed
    ):
        tools = [
            {**t, "type": "web_search"}
            if type(t) is dict and _str(t.get("type")) in _PREVIEW_TOOLS
            else t
            for t in allowed
        ]
        body["tool_choice"] = {**choice, "tools": tools}
        return True
    return False


def _str(value: Any) -> str:
    """The value if it is a string, else "": a list or dict must never reach a set lookup."""
    return value if type(value) is str else ""


def apply_provider_rules(
    body: dict[str, Any],
    *,
    drop_fields: Sequence[str],
    unsupported_tools: Sequence[str],
    refuse_file_ids: bool,
) -> bool:
    """What the chosen upstream cannot take: fields it refuses, tool types, file ids."""
    changed = False
    for name in drop_fields:
        if name in body:
            del body[name]
            changed = True
    tools = body.get("tools")
    if unsupported_tools and type(tools) is list:
        for i, tool in enumerate(tools):
            kind = tool.get("type") if type(tool) is dict else None
            if type(kind) is str and kind in unsupported_tools:
                raise InvalidRequestError(
                    f"Invalid value: '{kind}'. Tools of type '{kind}' are not supported by "
                    "the provider serving this model.",
                    param=f"tools[{i}].type",
                    code="invalid_value",
                )
    items = body.get("input")
    if refuse_file_ids and type(items) is list:
        _refuse_file_ids(items)
    return changed


def _refuse_file_ids(items: list[Any]) -> None:
    for i, item in enumerate(items):
        if type(item) is not dict:
            continue
        for key in ("content", "output"):
            parts = item.get(key)
            if type(parts) is not list:
                continue
            for j, part in enumerate(parts):
                if type(part) is not dict or _str(part.get("type")) not in _FILE_PARTS:
                    continue
                if part.get("file_id") is not None:
                    param = f"input[{i}].{key}[{j}].file_id"
                    raise InvalidRequestError(
                        f"Invalid '{param}': the provider serving this model cannot resolve "
                        "file ids. Send the file inline (file_data, file_url or image_url).",
                        param=param,
                        code="invalid_value",
                    )


def apply_policy(
    body: dict[str, Any],
    *,
    store: str,
    truncation: str,
    unknown_fields: str,
    known_fields: frozenset[str] = KNOWN_CREATE_FIELDS,
) -> bool:
    """Request-field policies: store (pass | force_false | refuse_true), truncation
    (pass | refuse), unknown_fields (forward | refuse)."""
    if unknown_fields == "refuse":
        for key in body:
            if key not in known_fields:
                raise InvalidRequestError(
                    f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter"
                )
    if truncation == "refuse" and body.get("truncation") not in (None, "disabled"):
        raise InvalidRequestError(
            "Invalid value for 'truncation': this deployment only serves 'disabled' truncation.",
            param="truncation",
            code="invalid_value",
        )
    if store == "refuse_true" and body.get("store") is True:
        raise InvalidRequestError(
            "Invalid value for 'store': this deployment does not keep responses; "
            "send 'store': false.",
            param="store",
            code="invalid_value",
        )
    if store == "force_false" and body.get("store") is not False:
        body["store"] = False
        return True
    return False
