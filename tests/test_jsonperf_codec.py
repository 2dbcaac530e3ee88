"""Duplicate keys are found however the body escapes its colons."""

from __future__ import annotations

import orjson
import pytest

from gateway.codec import check_shape
from gateway.errors import InvalidRequestError


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"m":{"k":"\\u003a","k":"v"}}',  # the escaped colon evens out the count
        b'{"m":{"k":"\\u003A","k":"v"}}',
        b'{"m":{"k":"\\u003c\\u003a","k":"v"}}',
    ],
)
def test_a_key_twice_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_shape(raw, orjson.loads(raw))
    assert caught.value.code == "duplicate_key"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"x:y","b":{"c":"\\u003a"}}',
        b'{"a":"\\u003c\\u003e","b":"\\u003A"}',
        b'{"a":"\\\\u003a","b":1}',
    ],
)
def test_escapes_alone_are_not_duplicates(raw: bytes) -> None:
    check_shape(raw, orjson.loads(raw))
