"""The `guardrails:` section of the config file, parsed into GuardrailRule entries."""

from __future__ import annotations

import re
from typing import Any

from gateway.config.sections import GuardrailRule, GuardrailWebhook

_LISTS = ("apply_to", "detect", "patterns", "keys", "projects", "models")


def parse_rules(raw: list[dict[str, Any]], problems: list[str]) -> tuple[GuardrailRule, ...]:
    """The rules, in order; a pattern that is not a valid regular expression, a rule that
    looks for nothing, and a name used twice are problems of the file."""
    rules = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"guardrails[{i}]"
        values: dict[str, Any] = {k: tuple(v) if k in _LISTS else v for k, v in entry.items()}
        if "webhook" in entry:
            values["webhook"] = GuardrailWebhook(**entry["webhook"])
        rule = GuardrailRule(**values)
        if rule.name in seen:
            problems.append(f"guardrails: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        if not (rule.detect or rule.patterns or rule.webhook):
            problems.append(f"{where}: the rule needs detect, patterns or webhook")
        for j, pattern in enumerate(rule.patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"{where}.patterns[{j}]: not a valid regular expression: {exc}")
        rules.append(rule)
    return tuple(rules)
