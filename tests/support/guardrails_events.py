"""Streams for guardrail tests: a known answer text, cut into deltas where a test says."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson

from gateway.mockgen import MockRun, build_response
from gateway.streaming.sse import encode_event


def split_events(text: str, cuts: list[int], model: str = "gpt-test") -> list[dict[str, Any]]:
    """The canonical event stream of a Response whose text is `text`, its deltas cut at
    `cuts` (offsets into the text)."""
    run = build_response({"model": model, "input": "x"}, model=model)
    response = orjson.loads(orjson.dumps(run.response))
    response["output"][0]["content"][0]["text"] = text
    bounds = [0, *sorted(set(cuts)), len(text)]
    pieces = tuple(text[a:b] for a, b in pairwise(bounds) if b > a)
    return MockRun(response, pieces).events()


def sse_bytes(events: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_event(orjson.dumps(e), e["type"]) for e in events)
