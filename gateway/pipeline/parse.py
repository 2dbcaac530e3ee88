"""parse: read the body once (size-limited) and decode it as a JSON object."""

from __future__ import annotations

from gateway.codec import parse_object, read_body
from gateway.models import Call


async def parse_body(call: Call) -> None:
    assert call.request is not None
    call.raw = await read_body(call.request)
    call.body = parse_object(call.raw, call.headers.get("Content-Type", ""))
