"""tail_usage: a JSON answer's usage read from its tail, or a ValueError to decode it all."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, strategies as st

from gateway.models import Usage, tail_usage

USAGE = {
    "input_tokens": 61,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 31,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 92,
}


def response(**extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "output": [], "usage": USAGE, **extra}


@pytest.mark.parametrize("option", [0, orjson.OPT_INDENT_2])
def test_reads_the_usage_of_compact_and_indented_answers(option: int) -> None:
    body = orjson.dumps(response(user=None, metadata={}), option=option)
    assert tail_usage(body) == Usage(input_tokens=61, cached_tokens=5, output_tokens=31)


def test_null_usage_is_none() -> None:
    assert tail_usage(b'{"id": "resp_1", "usage": null}') is None


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"usage": {"input_tokens": 1',  # cut short
        b'{"usage": {"nested": {"deep": 1}}}',  # not token counts
        b'{"usage": "a string"}',
        orjson.dumps(response(metadata={"usage": "high"})),  # a later key of the same name
        orjson.dumps(response(metadata={"kind": "usage"})),  # a later value of the same text
    ],
)
def test_anything_unclear_asks_for_a_full_decode(body: bytes) -> None:
    with pytest.raises(ValueError, match="usage"):
        tail_usage(body)


@given(
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=4),
)
def test_agrees_with_decoding_the_whole_answer(
    inputs: int, cached: int, outputs: int, metadata: dict[str, str]
) -> None:
    usage = {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": outputs,
    }
    body = orjson.dumps({"output": [{"text": '}{"usage":'}], "usage": usage, "metadata": metadata})
    try:
        found = tail_usage(body)
    except ValueError:
        return  # the caller decodes the whole body: always right
    assert found == Usage.from_response(orjson.loads(body))
