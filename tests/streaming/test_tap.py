"""The relay's tap: bytes out equal bytes in, whole frames only, lifecycle events found."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import UpstreamError
from gateway.mockgen import build_response
from gateway.streaming.relay import StreamTap
from gateway.streaming.sse import SSEParser, encode_event

EVENTS = build_response({"input": "tap me"}, model="m", response_id="resp_x", created_at=1).events()
RAW = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in EVENTS)
NO_NAMES = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in EVENTS)


@pytest.mark.parametrize("raw", [RAW, NO_NAMES], ids=["named-lf", "unnamed-crlf"])
def test_any_split_gives_the_same_bytes_and_events(raw: bytes) -> None:
    for cut in range(0, len(raw), 7):
        tap = StreamTap()
        out = tap.feed(raw[:cut]) + tap.feed(raw[cut:])
        assert out == raw
        assert tap.created is not None
        assert orjson.loads(tap.created)["type"] == "response.created"
        assert tap.response is not None
        assert tap.response["status"] == "completed"


def test_half_a_frame_is_held_back() -> None:
    tap = StreamTap()
    first_frame_end = RAW.index(b"\n\n") + 2
    assert tap.feed(RAW[: first_frame_end + 10]) == RAW[:first_frame_end]
    assert tap.feed(RAW[first_frame_end + 10 :]) == RAW[first_frame_end:]


def test_failure_after_deltas_continues_the_sequence() -> None:
    tap = StreamTap()
    cut = RAW.index(b"event: response.output_text.done")
    tap.feed(RAW[:cut])
    frame = tap.failure_frame(UpstreamError("cut"))
    (event,) = SSEParser().feed(frame)
    failed = orjson.loads(event.data)
    last_seen = SSEParser().feed(RAW[:cut])[-1]
    assert failed["type"] == "response.failed"
    assert failed["sequence_number"] == orjson.loads(last_seen.data)["sequence_number"] + 1
    assert failed["response"]["id"] == "resp_x"
