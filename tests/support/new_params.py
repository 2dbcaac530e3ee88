"""The newest create parameters, as the SDK sends them: what the tests pin at the upstream."""

from __future__ import annotations

from typing import Any

INCLUDE: list[Any] = [
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
NEW_PARAMS: dict[str, Any] = {
    "prompt_cache_key": "tenant-42/agent-7",
    "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    "prompt_cache_retention": "24h",
    "safety_identifier": "user-" + "x" * 59,  # 64 characters, the most allowed
    "context_management": [{"type": "compaction", "compact_threshold": 200000}],
    "moderation": {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}}},
    "include": INCLUDE,
    "max_tool_calls": 3,
    "top_logprobs": 2,
}
SERVICE_TIERS = ["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"]
