"""Restating the gateway's fields in a stream's lifecycle events parses those frames only:
delta frames that arrive in the same chunk go out unparsed, byte for byte."""

from __future__ import annotations

import orjson
import pytest

from gateway.events import LIFECYCLE
from gateway.mockgen import build_response
from gateway.streaming import relay
from gateway.streaming.sse import SSEEvent, SSEParser, encode_event

EVENTS = build_response(
    {"input": "a reply of many words " * 20}, model="m", response_id="resp_x", created_at=1
).events()
RAW = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in EVENTS)
NO_NAMES = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in EVENTS)
LIFECYCLE_EVENTS = sum(e["type"] in LIFECYCLE for e in EVENTS)


@pytest.mark.parametrize("raw", [RAW, NO_NAMES], ids=["named", "unnamed"])
def test_only_lifecycle_frames_are_parsed_when_restating(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[SSEEvent] = []

    class CountingParser(SSEParser):
        def feed(self, chunk: bytes) -> list[SSEEvent]:
            events = super().feed(chunk)
            parsed.extend(events)
            return events

    deltas = sum(e["type"].endswith(".delta") for e in EVENTS)
    assert deltas >= 10
    monkeypatch.setattr(relay, "SSEParser", CountingParser)
    tap = relay.StreamTap({"store": True, "previous_response_id": None})
    out = tap.feed(raw)  # one chunk: the whole stream, as a fast upstream's reads coalesce
    restated = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert [e["type"] for e in restated] == [e["type"] for e in EVENTS]
    assert all(e["response"]["store"] is True for e in restated if e["type"] in LIFECYCLE)
    # The tap's own parser sees every frame once (unnamed frames) or only the lifecycle ones;
    # restating adds one parse per lifecycle frame, never one per delta.
    own = len(EVENTS) if raw is NO_NAMES else LIFECYCLE_EVENTS
    assert len(parsed) - own <= LIFECYCLE_EVENTS


@pytest.mark.parametrize("gap", [b"\n\n", b"\r\n\r\n", b"\r\r"])
def test_a_delta_naming_a_lifecycle_event_goes_out_byte_for_byte(gap: bytes) -> None:
    events = build_response(
        {"input": "then response.completed and response.created " * 5},
        model="m",
        response_id="resp_x",
        created_at=1,
    ).events()
    frames = [b"data: " + orjson.dumps(e) for e in events]
    raw = gap.join(frames) + gap
    for cut in range(0, len(raw), 97):
        tap = relay.StreamTap({"store": True})
        out = tap.feed(raw[:cut]) + tap.feed(raw[cut:])
        sent = [f for f in out.split(gap) if f]
        assert len(sent) == len(events)
        for frame, before, event in zip(sent, frames, events, strict=True):
            if event["type"] in LIFECYCLE:
                assert orjson.loads(frame[6:])["response"]["store"] is True
            else:
                assert frame == before
