"""The Responses the gateway builds itself (the mock model, a warm-up): the request fields a
Response repeats back, with the Responses API's defaults, and the shape of its usage."""

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


def usage_object(
    input_tokens: int = 0, output_tokens: int = 0, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """A Response's `usage`, as the Responses API writes it."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    body: Mapping[str, Any],
    *,
    response_id: str,
    model: Any,
    created_at: int,
    output: list[Any],
    usage: dict[str, Any],
    truncated: bool = False,
) -> dict[str, Any]:
    """A whole Response, completed (or, `truncated`, incomplete at max_output_tokens)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "incomplete" if truncated else "completed",
        "completed_at": None if truncated else created_at,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "model": model,
        "output": output,
        "usage": usage,
        **echo(body),
    }
