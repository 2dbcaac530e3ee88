"""SSEParser, encode_event and event_type: framing, line ends, limits and chunking."""

from itertools import pairwise

import pytest
from hypothesis import given, strategies as st

from gateway.streaming.sse import SSEEvent, SSEParser, encode_event, event_type

STREAM = (
    b": keepalive\n\n"
    b'event: response.created\ndata: {"type":"response.created"}\n\n'
    b"id: 7\r\nretry: 100\r\ndata: first\r\ndata: second\r\n\r\n"
    b"event: ping\n\n"
    b"data:no-space\rdata\r\r"
    b"\n\n\n"
    b"event: end\ndata:  two spaces\n\n"
)
EXPECTED = [
    SSEEvent("response.created", b'{"type":"response.created"}'),
    SSEEvent(None, b"first\nsecond"),
    SSEEvent(None, b"no-space\n"),
    SSEEvent("end", b" two spaces"),
]


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_parser_reads_whole_stream() -> None:
    assert SSEParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("offset", range(len(STREAM) + 1))
def test_parser_gives_same_events_at_every_split(offset: int) -> None:
    assert feed_all(SSEParser(), [STREAM[:offset], STREAM[offset:]]) == EXPECTED


def test_parser_gives_same_events_byte_by_byte() -> None:
    assert feed_all(SSEParser(), [STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_parser_gives_same_events_for_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in pairwise(bounds)]
    assert feed_all(SSEParser(), chunks) == EXPECTED


def test_parser_handles_split_crlf() -> None:
    # Were the LF a second line end, it would be a blank line dispatching "a" alone.
    events = feed_all(SSEParser(), [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [SSEEvent(None, b"a\nb")]


def test_parser_ignores_comments() -> None:
    assert SSEParser().feed(b": ping\n\n:\ndata: x\n: inside\n\n") == [SSEEvent(None, b"x")]


def test_parser_joins_multiline_data() -> None:
    assert SSEParser().feed(b"data: a\ndata:\ndata: c\n\n") == [SSEEvent(None, b"a\n\nc")]


def test_parser_drops_frame_without_data() -> None:
    assert SSEParser().feed(b"event: keepalive\n\nid: 3\n\n") == []


def test_parser_keeps_empty_data() -> None:
    assert SSEParser().feed(b"data:\n\n") == [SSEEvent(None, b"")]


def test_parser_treats_empty_event_name_as_absent() -> None:
    assert SSEParser().feed(b"event:\ndata: x\n\n") == [SSEEvent(None, b"x")]


def test_parser_waits_for_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n") == []
    assert parser.feed(b"\n") == [SSEEvent(None, b"x")]


def test_oversize_frame_raises() -> None:
    with pytest.raises(ValueError, match="frame"):
        SSEParser(max_frame=16).feed(b"data: " + b"x" * 32 + b"\n\n")


def test_oversize_unfinished_frame_raises() -> None:
    parser = SSEParser(max_frame=16)
    parser.feed(b"data: 0123456789")
    with pytest.raises(ValueError, match="frame"):
        parser.feed(b"abcdef")


def test_frames_at_the_limit_pass() -> None:
    frame = b"data: " + b"x" * 10  # 16 bytes
    parser = SSEParser(max_frame=16)
    assert (
        feed_all(parser, [frame, b"\n", b"\n", frame + b"\n\n"]) == [SSEEvent(None, b"x" * 10)] * 2
    )


def test_at_boundary_tracks_unfinished_frames() -> None:
    parser = SSEParser()
    seen = [parser.at_boundary]
    for chunk in (b"event: x\n", b"data: y\n", b"\n\n", b"data: partial", b"\n", b"\n"):
        parser.feed(chunk)
        seen.append(parser.at_boundary)
    assert seen == [True, False, False, True, False, False, True]


def test_at_boundary_after_crlf_frame() -> None:
    parser = SSEParser()
    parser.feed(b"data: y\r\n\r")
    assert parser.at_boundary


def test_encode_event_with_name() -> None:
    assert encode_event(b"{}", "response.created") == b"event: response.created\ndata: {}\n\n"


def test_encode_event_splits_multiline_data() -> None:
    assert encode_event(b"a\nb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"


def test_encode_event_refuses_line_break_in_name() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_event(b"{}", "a\nb")


@given(
    data=st.binary().filter(lambda b: b"\r" not in b),
    name=st.none() | st.text(min_size=1).filter(lambda s: "\n" not in s and "\r" not in s),
)
def test_encode_then_parse_roundtrips(data: bytes, name: str | None) -> None:
    assert SSEParser().feed(encode_event(data, name)) == [SSEEvent(name, data)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(SSEEvent("response.done", b'{"type":"x"}'), "response.done", id="event-line"),
        pytest.param(
            SSEEvent(None, b'{"type": "response.completed"}'), "response.completed", id="json-type"
        ),
        pytest.param(
            SSEEvent(None, b'{"item":{"type":"message"},"type":"response.output_item.done"}'),
            "response.output_item.done",
            id="nested-type-first",
        ),
        pytest.param(SSEEvent(None, b"[DONE]"), None, id="not-json"),
        pytest.param(SSEEvent(None, b'{"object":"chat.completion.chunk"}'), None, id="no-type"),
    ],
)
def test_event_type(event: SSEEvent, expected: str | None) -> None:
    assert event_type(event) == expected
