"""Which rules apply to a call, and what their detectors find in a text.

The rules that apply to a (key, projects, model) are worked out once per combination and
kept: a call no rule applies to costs one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.config.sections import GuardrailRule, GuardrailWebhook, Settings
from gateway.guardrails.detectors import BUILT_IN, Detector, pattern

REDACT: Final = "redact"
BLOCK: Final = "block"
FLAG: Final = "flag"
_MAX_CACHED: Final = 4096


@dataclass(frozen=True, slots=True)
class Matcher:
    detector: Detector
    rule: str
    action: str
    order: int  # the rule's place in the file: at one place, the earlier rule wins
    label: str  # what a redacted match becomes


@dataclass(frozen=True, slots=True)
class Match:
    start: int
    end: int
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class Webhook:
    rule: str
    action: str
    settings: GuardrailWebhook


class Scanner:
    """Every matcher of one side (input or output), run over a text at once."""

    __slots__ = ("matchers", "max_chars")

    def __init__(self, matchers: Sequence[Matcher]) -> None:
        self.matchers = tuple(matchers)
        self.max_chars = max((m.detector.max_chars for m in matchers), default=0)

    def __bool__(self) -> bool:
        return bool(self.matchers)

    def scan(self, text: str) -> list[Match]:
        """The matches, none overlapping: the one starting first wins, then the earlier rule."""
        found = [
            Match(start, end, m) for m in self.matchers for start, end in m.detector.find(text)
        ]
        if len(found) < 2:
            return found
        found.sort(key=lambda f: (f.start, f.matcher.order, -f.end))
        kept: list[Match] = []
        for f in found:
            if not kept or f.start >= kept[-1].end:
                kept.append(f)
        return kept

    def hold_from(self, text: str) -> int:
        """Where the text some match could still grow from begins (a stream keeps it back)."""
        return min((m.detector.hold_from(text) for m in self.matchers), default=len(text))


def redacted(text: str, matches: Iterable[Match]) -> str:
    """The text with each redacting match replaced by its label."""
    out: list[str] = []
    at = 0
    for m in matches:
        if m.matcher.action != REDACT:
            continue
        out.append(text[at : m.start])
        out.append(m.matcher.label)
        at = m.end
    if not out:
        return text
    out.append(text[at:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules one call is under: its input scanner, webhooks, and output scanner."""

    names: tuple[str, ...]
    input: Scanner
    webhooks: tuple[Webhook, ...]  # on input
    output: Scanner
    output_webhooks: tuple[Webhook, ...] = ()  # on JSON answers


@dataclass(slots=True)
class Guardrails:
    """The configured rules, compiled; `policy` says which apply to a call."""

    rules: tuple[GuardrailRule, ...]
    _matchers: dict[str, tuple[Matcher, ...]] = field(default_factory=dict)
    _cache: dict[tuple[str, tuple[str, ...], str], Policy | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for order, rule in enumerate(self.rules):
            made = [
                Matcher(BUILT_IN[d], rule.name, rule.action, order, f"[REDACTED:{d}]")
                for d in rule.detect
            ]
            made += [
                Matcher(
                    pattern(rule.name, p, rule.max_match_chars),
                    rule.name,
                    rule.action,
                    order,
                    f"[REDACTED:{rule.name}]",
                )
                for p in rule.patterns
            ]
            self._matchers[rule.name] = tuple(made)

    def policy(self, key: str, projects: tuple[str, ...], model: str) -> Policy | None:
        """The rules that apply where every list a rule has matches; None when none does."""
        cache_key = (key, projects, model)
        try:
            return self._cache[cache_key]
        except KeyError:
            pass
        applying = [r for r in self.rules if _applies(r, key, projects, model)]
        made = self.of(r.name for r in applying) if applying else None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[cache_key] = made
        return made

    def of(self, names: Iterable[str]) -> Policy | None:
        """The policy of the named rules (a job carries the names its submission was under)."""
        wanted = set(names)
        rules = [r for r in self.rules if r.name in wanted]
        if not rules:
            return None
        inbound = [m for r in rules if "input" in r.apply_to for m in self._matchers[r.name]]
        outbound = [m for r in rules if "output" in r.apply_to for m in self._matchers[r.name]]
        hooks = {
            side: tuple(
                Webhook(r.name, r.action, r.webhook)
                for r in rules
                if r.webhook is not None and side in r.apply_to
            )
            for side in ("input", "output")
        }
        return Policy(
            tuple(r.name for r in rules),
            Scanner(inbound),
            hooks["input"],
            Scanner(outbound),
            hooks["output"],
        )


def _applies(rule: GuardrailRule, key: str, projects: tuple[str, ...], model: str) -> bool:
    if rule.keys is not None and key not in rule.keys:
        return False
    if rule.projects is not None and not any(p in rule.projects for p in projects):
        return False
    return rule.models is None or model in rule.models


def guardrails_of(settings: Settings) -> Guardrails | None:
    """The compiled rules of these settings, None without any (made once, at start-up)."""
    return Guardrails(settings.guardrails) if settings.guardrails else None
