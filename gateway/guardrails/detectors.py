"""What a guardrail looks for: the built-in detectors and a rule's own patterns.

A detector is a regular expression, an optional check of what it matched (Luhn for card
numbers, mod-97 for IBANs), the longest text a match can span, and the characters a match is
made of. A stream holds back only the trailing run of those characters (at most the longest
match), which is all a match still to be completed can begin with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

# Returns where an accepted match ends (it may trim or extend the regex's match), or -1.
Check = Callable[[str, int, int], int]


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    regex: re.Pattern[str]
    max_chars: int  # the longest text a match spans
    chars: frozenset[str] | None = None  # what a match is made of; None: any character
    check: Check | None = None
    # Text before the trailing run that a match may begin with ("Bearer " before a token).
    lead: re.Pattern[str] | None = None
    # Finds the regex's matches faster (a cheap search for where one can be, first).
    finder: Callable[[str], Iterator[tuple[int, int]]] | None = None

    def hold_from(self, text: str) -> int:
        """Where the text that a match still to be completed could begin with starts."""
        floor = max(0, len(text) - self.max_chars)
        chars = self.chars
        if chars is None:
            return floor
        at = len(text)
        while at > floor and text[at - 1] in chars:
            at -= 1
        if self.lead is not None and at > floor and text[at - 1] in " \t":
            lead = self.lead.search(text, max(floor, at - 16), at)
            if lead is not None:
                at = lead.start()
        return at

    def find(self, text: str) -> list[tuple[int, int]]:
        found = []
        spans = (
            self.finder(text)
            if self.finder is not None
            else (m.span() for m in self.regex.finditer(text))
        )
        for start, end in spans:
            if self.check is not None:
                end = self.check(text, start, end)
                if end < 0:
                    continue
            found.append((start, end))
        return found


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616: the country and check digits moved to the end, letters as 10..35, mod 97."""
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _trimmed(valid: Callable[[str], bool], seps: str) -> Check:
    """Accept the match, or the longest piece of it ending before one of its separators."""

    def check(text: str, start: int, end: int) -> int:
        while end > start:
            compact = "".join(ch for ch in text[start:end] if ch not in seps)
            if valid(compact):
                return end
            cut = max(text.rfind(sep, start, end) for sep in seps)
            if cut <= start:
                return -1
            end = cut
        return -1

    return check


def _card(compact: str) -> bool:
    return 13 <= len(compact) <= 19 and luhn(compact)


def _phone(text: str, start: int, end: int) -> int:
    digits = sum(ch.isdigit() for ch in text[start:end])
    return end if 7 <= digits <= 15 else -1


_TOKEN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-")
_TOKEN_TAIL: Final = re.compile(r"[A-Za-z0-9_-]*")


def _secret(text: str, start: int, end: int) -> int:
    """A key longer than its pattern's bound is redacted to its end where the text has it."""
    if text[start : start + 6].lower() == "bearer":
        while text[end - 1] == ".":  # a sentence's full stop
            end -= 1
        return end
    tail = _TOKEN_TAIL.match(text, end)
    return tail.end() if tail is not None else end


def _within(
    anchor: re.Pattern[str], regex: re.Pattern[str]
) -> Callable[[str], Iterator[tuple[int, int]]]:
    """Matches lie inside the anchor's matches (runs of the characters they are made of)."""

    def find(text: str) -> Iterator[tuple[int, int]]:
        for a in anchor.finditer(text):
            for m in regex.finditer(text, a.start(), a.end() + 1):
                yield m.span()

    return find


def _starting(
    anchor: re.Pattern[str], regex: re.Pattern[str]
) -> Callable[[str], Iterator[tuple[int, int]]]:
    """Matches begin where the anchor matches (a key's prefix)."""

    def find(text: str) -> Iterator[tuple[int, int]]:
        after = 0
        for a in anchor.finditer(text):
            if a.start() < after:
                continue
            m = regex.match(text, a.start())
            if m is not None:
                after = m.end()
                yield m.span()

    return find


_LOCAL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_DOMAIN: Final = re.compile(r"@(?:[A-Za-z0-9-]{1,63}\.){1,4}[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def _emails(text: str) -> Iterator[tuple[int, int]]:
    """From each `@`: the local part before it (1 to 64 characters), the domain after it."""
    at = text.find("@")
    while at >= 0:
        start = at
        while start > 0 and at - start <= 64 and text[start - 1] in _LOCAL:
            start -= 1
        domain = _DOMAIN.match(text, at) if 0 < at - start <= 64 else None
        if domain is not None and (start == 0 or text[start - 1] not in _LOCAL):
            yield start, domain.end()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


EMAIL: Final = Detector(
    "email",
    re.compile(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,4}"
        r"[A-Za-z]{2,24}(?![A-Za-z0-9-])"
    ),
    64 + 1 + 4 * 64 + 24,
    frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-@"),
    finder=_emails,
)
_PHONE: Final = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
)
PHONE: Final = Detector(
    "phone",
    _PHONE,
    48,
    frozenset("0123456789+() .-"),
    _phone,
    finder=_within(re.compile(r"[\d+(][\d +().-]{6,}"), _PHONE),
)
CREDIT_CARD: Final = Detector(
    "credit_card",
    # A digit first (then no digit before it): the regex engine skips to digits quickly.
    re.compile(r"\d(?<!\d\d)(?:[ -]?\d){12,18}(?!\d)"),
    19 + 18,
    frozenset("0123456789 -"),
    _trimmed(_card, " -"),
)
IBAN: Final = Detector(
    "iban",
    re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"),
    4 + 2 * 30,
    frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "),
    _trimmed(iban_valid, " "),
)
_SECRET: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,256}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"
    r"|xox[bpoas]-[A-Za-z0-9-]{10,250}"
    r"|eyJ[A-Za-z0-9_-]{8,500}\.eyJ[A-Za-z0-9_-]{8,2000}\.[A-Za-z0-9_-]{8,800}"
    r"|[Bb][Ee][Aa][Rr][Ee][Rr][ \t]{1,4}[A-Za-z0-9._~+/-]{16,512}=*"
    r")"
)
SECRET: Final = Detector(
    "secret",
    _SECRET,
    3320,
    _TOKEN,
    _secret,
    re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr][ \t]{1,4}\Z"),
    _starting(re.compile(r"[sAgxeBb](?:k-|KIA|h[pousr]_|ox[bpoas]-|yJ|(?i:earer))"), _SECRET),
)

BUILT_IN: Final = {d.name: d for d in (EMAIL, PHONE, CREDIT_CARD, IBAN, SECRET)}


def pattern(name: str, source: str, max_chars: int) -> Detector:
    """A rule's own regular expression: a stream holds back `max_chars` for it."""
    return Detector(name, re.compile(source), max_chars)
