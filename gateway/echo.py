"""The request fields a Response object repeats back, with the Responses API's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def or_default(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def _merged(defaults: dict[str, Any], value: object) -> dict[str, Any]:
    return {**defaults, **value} if isinstance(value, Mapping) else defaults


def echo(body: Mapping[str, Any]) -> dict[str, Any]:
    """What any Response built by the gateway (the mock model, a translated Chat Completions
    answer) repeats from its request."""
    conversation = body.get("conversation")
    tier = or_default(body, "service_tier", "auto")
    return {
        "background": or_default(body, "background", False),
        "conversation": {"id": conversation} if isinstance(conversation, str) else conversation,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": or_default(body, "metadata", {}),
        "parallel_tool_calls": or_default(body, "parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt": body.get("prompt"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": _merged({"effort": None, "summary": None}, body.get("reasoning")),
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": {"auto": "default", "fast": "priority"}.get(str(tier), tier),
        "store": or_default(body, "store", True),
        "temperature": or_default(body, "temperature", 1.0),
        "text": _merged({"format": {"type": "text"}, "verbosity": "medium"}, body.get("text")),
        "tool_choice": or_default(body, "tool_choice", "auto"),
        "tools": or_default(body, "tools", []),
        "top_logprobs": or_default(body, "top_logprobs", 0),
        "top_p": or_default(body, "top_p", 1.0),
        "truncation": or_default(body, "truncation", "disabled"),
        "user": body.get("user"),
    }
