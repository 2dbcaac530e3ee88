"""Microbenchmark of guardrails: the cost per KB of text to scan a request's input and to
filter a stream's output, with every built-in detector on (and with a rule's own pattern).

Run as `.venv/bin/python bench/guardrails.py`.
A key no rule applies to pays none of this: its input is not walked and its stream stays a
byte pipe.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.sections import GuardrailRule
from gateway.guardrails.guard import Guard
from gateway.guardrails.inbound import scan_text
from gateway.guardrails.rules import Guardrails, Policy, Scanner
from gateway.guardrails.stream import filtered
from gateway.streaming.sse import encode_event

PROSE = (
    "The quarterly report covers revenue, churn and the hiring plan for the next two "
    "quarters. Reach the finance team at finance.team@example.com or call +1 415 555 0132; "
    "invoices go to DE89 3704 0044 0532 0130 00. Never paste keys such as "
    "sk-proj-AbCdEf0123456789_AbCdEf01 into a prompt. "
)
DETECT = ("email", "phone", "credit_card", "iban", "secret")


def policy(patterns: tuple[str, ...] = ()) -> Policy:
    rule = GuardrailRule(name="pii", detect=DETECT, patterns=patterns)
    made = Guardrails((rule,)).of(["pii"])
    assert made is not None
    return made


def text_of(kb: int) -> str:
    return (PROSE * (kb * 1024 // len(PROSE) + 1))[: kb * 1024]


def best_us(run: Callable[[], object], rounds: int = 7, number: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times) * 1e6


def stream_chunks(text: str, size: int = 4) -> list[bytes]:
    """A Responses stream of `text` in deltas of `size` characters, one event a chunk."""
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.output_text.delta", **at, "delta": text[i : i + size], "logprobs": []}
        for i in range(0, len(text), size)
    ]
    events.append({"type": "response.output_text.done", **at, "text": text, "logprobs": []})
    return [
        encode_event(orjson.dumps({**e, "sequence_number": n}), str(e["type"]))
        for n, e in enumerate(events)
    ]


async def _drain(chunks: list[bytes], made: Policy) -> int:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    total = 0
    async for out in filtered(source(), Guard(made)):
        total += len(out)
    return total


def measure(text: str, made: Policy) -> tuple[float, float]:
    """Input scan and stream filter, in microseconds per KB of text."""
    kb = len(text) / 1024
    scan = best_us(lambda: scan_text(Guard(made), made, text, lambda: "input"))
    chunks = stream_chunks(text)
    loop = asyncio.new_event_loop()
    try:
        filt = best_us(lambda: loop.run_until_complete(_drain(chunks, made)), 5, 2)
    finally:
        loop.close()
    return scan / kb, filt / kb


def main() -> None:
    kb = 16
    dense = text_of(kb)
    plain = ("The quarterly report covers revenue, churn and the hiring plan. " * 300)[: kb * 1024]
    built_in, with_pattern = policy(), policy((r"ticket-\d{6}",))
    # The filter's own cost (parsing, renumbering, re-encoding) with nothing to look for.
    bare = Policy(("none",), built_in.input, (), Scanner(()))
    rows = [
        ("built-in, plain text", measure(plain, built_in)),
        ("built-in, PII-dense", measure(dense, built_in)),
        ("+ a pattern, plain", measure(plain, with_pattern)),
        ("no detector (parsing)", (0.0, measure(plain, bare)[1])),
    ]
    deltas = len(stream_chunks(plain)) - 1
    print(f"{kb} KB of text; the stream: {deltas} deltas of 4 characters (one event a chunk)")
    print(f"{'rules':<24}{'input scan us/KB':>18}{'stream filter us/KB':>22}{'us/delta':>10}")
    per_kb = deltas / kb
    for label, (scan, filt) in rows:
        print(f"{label:<24}{scan:>18.1f}{filt:>22.1f}{filt / per_kb:>10.1f}")


if __name__ == "__main__":
    main()
