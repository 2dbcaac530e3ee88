"""A deterministic fake compaction (POST /responses/compact): the shape OpenAI answers with.

The answer keeps the conversation's user messages and replaces everything else with one
`compaction` item whose `encrypted_content` is opaque to the client (here: base64 of a short
summary, so a later turn sent to the fake model still reads as a conversation).
"""

from __future__ import annotations

import base64
import math
import secrets
import time
from typing import Any

import orjson

from gateway.echo import usage_object

Json = dict[str, Any]


def _items(value: object) -> list[Json]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _user_message(item: Json) -> Json:
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {
        "id": item.get("id") or f"msg_{secrets.token_hex(24)}",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": content if isinstance(content, list) else [],
    }


def build_compaction(body: Json, model: str) -> Json:
    """The compacted window of `body` (instructions and input, context already expanded)."""
    items = _items(body.get("input"))
    users = [
        _user_message(item)
        for item in items
        if item.get("role") == "user" and item.get("type", "message") == "message"
    ]
    summary = orjson.dumps(
        {"model": model, "items": len(items), "kinds": sorted({str(i.get("type")) for i in items})}
    )
    sealed = base64.b64encode(b"mock-compaction:" + summary).decode()
    read = len(orjson.dumps([body.get("instructions"), body.get("input")]))
    input_tokens = max(1, math.ceil(read / 4))
    output_tokens = max(1, math.ceil(len(sealed) / 4))
    return {
        "id": f"cmp_{secrets.token_hex(24)}",
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [
            *users,
            {
                "id": f"cmp_{secrets.token_hex(24)}",
                "type": "compaction",
                "encrypted_content": sealed,
            },
        ],
        "usage": usage_object(input_tokens, output_tokens),
    }
