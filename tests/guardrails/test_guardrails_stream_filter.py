"""The stream filter alone: bytes in, bytes out, whatever the upstream's chunking."""

from __future__ import annotations

import orjson

from gateway.config.sections import GuardrailRule
from gateway.guardrails.guard import Guard
from gateway.guardrails.rules import Guardrails, Policy
from gateway.guardrails.stream import StreamFilter
from gateway.streaming.sse import SSEParser
from tests.support.guardrails_events import split_events, sse_bytes

TEXT = "Mail jane.doe@example.com, card 4111 1111 1111 1111 or key sk-abcdefghijklmnopqrstu0123."
REDACTED = "Mail [REDACTED:email], card [REDACTED:credit_card] or key [REDACTED:secret]."


def policy() -> Policy:
    rule = GuardrailRule(name="pii", detect=("email", "credit_card", "secret"))
    made = Guardrails((rule,)).of(["pii"])
    assert made is not None
    return made


def run(stream: bytes, size: int) -> bytes:
    made = StreamFilter(Guard(policy()))
    return b"".join(made.feed(stream[i : i + size]) for i in range(0, len(stream), size))


def texts(stream: bytes) -> tuple[str, list[int], str]:
    events = [orjson.loads(e.data) for e in SSEParser().feed(stream)]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]["output"][0]["content"][0]["text"]
    return deltas, [e["sequence_number"] for e in events], final


def test_any_chunking_gives_the_same_events() -> None:
    stream = sse_bytes(split_events(TEXT, list(range(0, len(TEXT), 3))))
    whole = run(stream, len(stream))
    deltas, numbers, final = texts(whole)
    assert deltas == final == REDACTED
    assert numbers == list(range(len(numbers)))
    for size in (1, 2, 7, 64, 1000):
        assert run(stream, size) == whole, size


def test_crlf_framed_streams_are_filtered_too() -> None:
    stream = sse_bytes(split_events(TEXT, [10, 20, 30])).replace(b"\n", b"\r\n")
    deltas, _, final = texts(run(stream, 5))
    assert deltas == final == REDACTED
