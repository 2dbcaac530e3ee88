"""The tap counts delta events for the usage estimate whenever the stream's end brings none."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.mockgen import build_response
from gateway.streaming.relay import StreamTap
from gateway.streaming.sse import encode_event

EVENTS = build_response(
    {"input": "count these words " * 5}, model="m", response_id="resp_x", created_at=1
).events()
DELTAS = sum(e["type"].endswith(".delta") for e in EVENTS)


def _raw(events: list[dict[str, Any]]) -> list[bytes]:
    return [encode_event(orjson.dumps(e), e["type"]) for e in events]


def _without_usage(event: dict[str, Any]) -> dict[str, Any]:
    if isinstance(event.get("response"), dict):
        event = {**event, "response": {**event["response"], "usage": None}}
    return event


@pytest.mark.parametrize("fields", [None, {"store": True}], ids=["plain", "restated"])
@pytest.mark.parametrize("whole", [True, False], ids=["one-chunk", "event-by-event"])
def test_an_end_without_usage_counts_every_delta(
    fields: dict[str, Any] | None, whole: bool
) -> None:
    frames = _raw([_without_usage(e) for e in EVENTS])
    tap = StreamTap(fields)
    for chunk in [b"".join(frames)] if whole else frames:
        tap.feed(chunk)
    assert tap.response is not None
    assert tap.response["usage"] is None
    assert tap.deltas == DELTAS >= 10


@pytest.mark.parametrize("whole", [True, False], ids=["one-chunk", "event-by-event"])
def test_a_cut_stream_counts_the_deltas_it_sent(whole: bool) -> None:
    frames = _raw(EVENTS)[:-3]  # the terminal event never came
    tap = StreamTap()
    for chunk in [b"".join(frames)] if whole else frames:
        tap.feed(chunk)
    assert tap.response is None
    assert tap.deltas == DELTAS
