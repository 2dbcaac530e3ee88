"""The built-in detectors: what they find, what they must not, and their checksums."""

from __future__ import annotations

import random

import pytest

from gateway.guardrails.detectors import BUILT_IN, iban_valid, luhn

CARDS = ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"]
IBANS = ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32"]
SECRETS = [
    "sk-abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-proj-AbCdEf0123456789_AbCdEf0123456789-xyz",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2c3D4e5" * 3 + "a1B2c3",
    "xoxb-123456789012-abcdefghij",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Bearer abcdefghijklmnop0123456789",
]
EMAILS = ["jane.doe@example.com", "a+tag@mail.example.co.uk", "x_y-z@sub-domain.org"]
PHONES = ["+1 415 555 0132", "(415) 555-0132", "415-555-0132", "+44 20 7946 0958", "+4930901820"]


def found(name: str, text: str) -> list[str]:
    return [text[s:e] for s, e in BUILT_IN[name].find(text)]


@pytest.mark.parametrize(
    ("name", "samples"),
    [
        ("credit_card", CARDS),
        ("iban", IBANS),
        ("secret", SECRETS),
        ("email", EMAILS),
        ("phone", PHONES),
    ],
)
def test_each_detector_finds_its_kind_in_a_sentence(name: str, samples: list[str]) -> None:
    for sample in samples:
        assert found(name, f"Here it is: {sample}. Thanks!") == [sample]


def test_luhn_and_iban_checksums() -> None:
    assert luhn("4111111111111111")
    assert not luhn("4111111111111112")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937")


def test_random_sixteen_digit_numbers_failing_luhn_are_not_cards() -> None:
    rng = random.Random(7)
    checked = 0
    while checked < 200:
        digits = "".join(rng.choice("0123456789") for _ in range(16))
        if luhn(digits):
            continue
        checked += 1
        assert found("credit_card", f"order {digits} shipped") == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("credit_card", "call 4111 1111 1111 1112 now"),  # fails Luhn
        ("credit_card", "the year 2024 and 12345 items"),
        ("iban", "DE89 3704 0044 0532 0130 01"),  # fails mod-97
        ("iban", "THE QUICK BROWN FOX"),
        ("email", "not an address: jane@localhost or @example.com"),
        ("phone", "released 2024-01-15, version 1.2.3, pi 3.14159265"),
        ("phone", "card 4111-1111-1111-1111"),
        ("secret", "sk-short and a skeleton key, task-abcdefghijklmnopqrstuvwxyz"),
        ("secret", "AKIA is a prefix; bearer of good news"),
    ],
)
def test_what_must_not_match(name: str, text: str) -> None:
    assert found(name, text) == []


def test_a_card_followed_by_more_digits_is_still_found() -> None:
    assert found("credit_card", "4111 1111 1111 1111 2024") == ["4111 1111 1111 1111"]
    assert found("iban", "DE89 3704 0044 0532 0130 00 IS MINE") == ["DE89 3704 0044 0532 0130 00"]


def test_a_key_longer_than_its_bound_is_found_whole() -> None:
    key = "sk-proj-" + "x" * 600
    assert found("secret", f"key {key} end") == [key]


def test_hold_from_keeps_only_the_run_a_match_could_still_grow_from() -> None:
    email = BUILT_IN["email"]
    text = "write to jane.do"
    assert text[email.hold_from(text) :] == "jane.do"
    secret = BUILT_IN["secret"]
    assert "the header is Bearer "[secret.hold_from("the header is Bearer ") :] == "Bearer "
    card = BUILT_IN["credit_card"]
    assert "pay with 4111 11"[card.hold_from("pay with 4111 11") :] == " 4111 11"
