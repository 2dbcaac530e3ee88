"""The tap decodes each lifecycle event's JSON once, restating included, and what it sends is
the same however the stream was cut into chunks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.events import LIFECYCLE
from gateway.mockgen import build_response
from gateway.streaming import relay
from gateway.streaming.sse import encode_event

EVENTS = build_response(
    {"input": "a reply of many words " * 20}, model="m", response_id="resp_x", created_at=1
).events()
RAW = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in EVENTS)
FIELDS = {"store": True, "previous_response_id": "resp_before"}


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every event data the tap decoded as JSON."""
    seen: list[bytes] = []
    decode = relay._object

    def counting(data: bytes) -> dict[str, Any]:
        seen.append(data)
        return decode(data)

    monkeypatch.setattr(relay, "_object", counting)
    return seen


def test_restating_decodes_each_lifecycle_event_once(decodes: list[bytes]) -> None:
    tap = relay.StreamTap(dict(FIELDS))
    out = tap.feed(RAW)  # the whole stream in one read, as a fast upstream's coalesce
    sent = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert [e["type"] for e in sent] == [e["type"] for e in EVENTS]
    for event in sent:
        if event["type"] in LIFECYCLE:
            assert event["response"]["store"] is True
            assert event["response"]["previous_response_id"] == "resp_before"
    assert len(decodes) == sum(e["type"] in LIFECYCLE for e in EVENTS)


@pytest.mark.parametrize("fields", [None, FIELDS], ids=["plain", "restated"])
def test_whole_and_cut_streams_give_the_same_bytes(fields: dict[str, Any] | None) -> None:
    whole = relay.StreamTap(fields and dict(fields)).feed(RAW)
    frames = [f + b"\n\n" for f in RAW.split(b"\n\n")[:-1]]
    for size in (1, 2, 3, 7):  # whole frames, some at a time
        tap = relay.StreamTap(fields and dict(fields))
        out = b"".join(
            tap.feed(b"".join(frames[i : i + size])) for i in range(0, len(frames), size)
        )
        assert out == whole
        assert tap.response is not None
        assert tap.response["status"] == "completed"
    for cut in range(1, len(RAW), 101):  # anywhere, halves of frames held back
        tap = relay.StreamTap(fields and dict(fields))
        assert tap.feed(RAW[:cut]) + tap.feed(RAW[cut:]) == whole
    if fields is None:
        assert whole == RAW


def test_a_stream_mixing_named_and_unnamed_frames_is_restated_alike() -> None:
    unnamed = b"".join(
        (b"data: " if e["type"] in LIFECYCLE else b"event: " + e["type"].encode() + b"\ndata: ")
        + orjson.dumps(e)
        + b"\n\n"
        for e in EVENTS
    )
    whole = relay.StreamTap(dict(FIELDS)).feed(unnamed)
    frames = [f + b"\n\n" for f in unnamed.split(b"\n\n")[:-1]]
    tap = relay.StreamTap(dict(FIELDS))
    assert b"".join(tap.feed(f) for f in frames) == whole
