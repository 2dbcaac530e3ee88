"""One call's guardrails: the policy decided at admission, and the rules that matched."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway import metrics
from gateway.guardrails.rules import Policy
from gateway.limits.usage import Usage

HEADER = "x-gateway-guardrails"


@dataclass(slots=True)
class Guard:
    policy: Policy
    hits: list[str] = field(default_factory=list)  # rule names, each once
    # What an answer withheld (its check failed, closed) had used upstream: it is charged.
    withheld: Usage | None = None

    def hit(self, rule: str, action: str) -> None:
        metrics.guardrail_hit(rule, action)
        if rule not in self.hits:
            self.hits.append(rule)

    @property
    def names(self) -> str:
        """The matched rules, in the config's order, as the header and the usage record name
        them."""
        return ",".join(name for name in self.policy.names if name in self.hits)
