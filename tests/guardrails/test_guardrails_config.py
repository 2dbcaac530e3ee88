"""The `guardrails:` section: its rules as typed settings, and every problem in it listed."""

from __future__ import annotations

import pytest

from gateway.config import GuardrailRule, GuardrailWebhook, load
from gateway.errors import ConfigError
from gateway.guardrails.rules import guardrails_of

GOOD = """
guardrails:
  - name: pii
    apply_to: [input, output]
    detect: [email, phone, credit_card, iban, secret]
    patterns: ['ticket-\\d{6}']
    action: redact
    keys: [team-a]
  - name: moderation
    apply_to: [input]
    webhook: {url: "http://moderation:8000/v1/moderations", timeout_ms: 300, on_error: closed}
    action: block
    projects: [proj-a]
    models: [gpt-4.1]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, {})
    return info.value.problems


def test_rules_load_in_order_with_their_defaults() -> None:
    settings = load(GOOD, {})
    pii, moderation = settings.guardrails
    assert pii == GuardrailRule(
        name="pii",
        detect=("email", "phone", "credit_card", "iban", "secret"),
        patterns=(r"ticket-\d{6}",),
        keys=("team-a",),
    )
    assert moderation.webhook == GuardrailWebhook(
        "http://moderation:8000/v1/moderations", 300, "closed"
    )
    assert load("", {}).guardrails == ()


def test_a_rule_applies_where_every_list_it_has_matches() -> None:
    compiled = guardrails_of(load(GOOD, {}))
    assert compiled is not None
    assert compiled.policy("team-b", ("proj-b",), "gpt-4.1") is None
    only_pii = compiled.policy("team-a", ("proj-b",), "gpt-4.1")
    assert only_pii is not None
    assert only_pii.names == ("pii",)
    both = compiled.policy("team-a", ("proj-a",), "gpt-4.1")
    assert both is not None
    assert both.names == ("pii", "moderation")
    other_model = compiled.policy("team-c", ("proj-a",), "other")
    assert other_model is None


def test_every_problem_of_the_section_is_listed() -> None:
    found = problems(
        """
guardrails:
  - {name: a, detect: [email], patterns: ['(unclosed']}
  - {name: a, detect: [ssn]}
"""
    )
    assert any(p.startswith("guardrails[1].detect[0]:") for p in found), found
    found = problems(
        """
guardrails:
  - {name: a, detect: [email], patterns: ['ok', '(unclosed']}
  - {name: a, detect: [email]}
  - {name: b, action: redact}
"""
    )
    assert found[0].startswith("guardrails[0].patterns[1]: not a valid regular expression")
    assert "guardrails: duplicate rule name 'a'" in found
    assert "guardrails[2]: the rule needs detect, patterns or webhook" in found
    bad_action = problems("guardrails:\n  - {name: a, detect: [email], action: delete}\n")
    assert bad_action[0].startswith("guardrails[0].action:")
