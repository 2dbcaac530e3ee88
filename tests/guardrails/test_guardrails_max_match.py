"""`max_match_chars`: how much text a stream holds back for a rule's own `patterns`. A match
no longer than it is caught however the deltas cut it; a longer one can be partly sent
before it is complete, which is why the setting exists."""

from __future__ import annotations

import orjson
import pytest

from gateway.config.sections import GuardrailRule
from gateway.guardrails.guard import Guard
from gateway.guardrails.rules import Guardrails
from gateway.guardrails.stream import StreamFilter
from gateway.streaming.sse import SSEParser
from tests.support.guardrails_events import split_events, sse_bytes

ORDER = "ORDER-" + "7" * 20  # 26 characters
TEXT = f"Your order {ORDER} ships today."


def delivered(max_match_chars: int) -> str:
    rule = GuardrailRule(
        name="orders", patterns=(r"ORDER-[0-9]{20}",), max_match_chars=max_match_chars
    )
    policy = Guardrails((rule,)).of(["orders"])
    assert policy is not None
    one_char_deltas = sse_bytes(split_events(TEXT, list(range(1, len(TEXT)))))
    out = StreamFilter(Guard(policy)).feed(one_char_deltas)
    events = [orjson.loads(e.data) for e in SSEParser().feed(out)]
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


@pytest.mark.parametrize("max_match_chars", [26, 100])
def test_a_match_within_the_hold_is_caught_at_one_character_a_delta(
    max_match_chars: int,
) -> None:
    assert delivered(max_match_chars) == "Your order [REDACTED:orders] ships today."


def test_a_hold_shorter_than_the_match_lets_its_start_out() -> None:
    got = delivered(8)
    assert "[REDACTED:orders]" not in got
    assert ORDER[:10] in got
