"""Bifrost's body fields on JSON answers, for clients written against Bifrost.

Opted into per key (`compat: bifrost`) or per request (`x-bf-extra-fields: true`): the answer's
`usage` gains `cost` (`input_tokens_cost`, `output_tokens_cost`, `total_cost`, USD at the
model's price) and the answer gains `extra_fields` (`request_type`, `provider`,
`model_requested`, `model_deployment`, `latency` in ms, `chunk_index`). Only the client's copy
changes: a stored response is what the upstream said.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.codec import dumps
from gateway.limits.usage import cost_parts
from gateway.models import Call


def wanted(call: Call) -> bool:
    key = call.principal
    if key is not None and key.compat == "bifrost":
        return True
    return call.headers.get("x-bf-extra-fields", "").lower() == "true"


def add_fields(call: Call, answered: web.Response) -> None:
    """Give a successful JSON answer Bifrost's fields, when the caller asked for them."""
    response = call.response
    if answered.status >= 300 or response is None or call.target is None or not wanted(call):
        return
    body: dict[str, Any] = dict(response)
    usage = body.get("usage")
    if isinstance(usage, dict) and call.usage is not None:
        price = call.route.price if call.route is not None else None
        usd_in, usd_out = (0.0, 0.0) if price is None else cost_parts(price, call.usage)
        body["usage"] = {
            **usage,
            "cost": {
                "input_tokens_cost": usd_in,
                "output_tokens_cost": usd_out,
                "total_cost": usd_in + usd_out,
            },
        }
    compaction = body.get("object") == "response.compaction"
    body["extra_fields"] = {
        "request_type": "compaction" if compaction else "responses",
        "provider": call.target.provider.name,
        "model_requested": call.model,
        "model_deployment": call.target.model,
        "latency": int((time.monotonic() - call.started) * 1000),
        "chunk_index": 0,
    }
    answered.body = dumps(body)
