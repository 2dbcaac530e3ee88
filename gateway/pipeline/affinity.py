"""A call's routing affinity: what the attempt engine prefers for it, the input each attempt
sends, and the header its answer carries (see gateway.affinity)."""

from __future__ import annotations

from gateway import metrics
from gateway.affinity import HEADER, SWITCHED, Affinity, Binding
from gateway.config import Account
from gateway.models import Call
from gateway.routing import Target


def for_call(call: Call) -> Affinity:
    key = call.principal
    return Affinity(key.id if key is not None else "", call.body, call.binding)


def aim(call: Call, target: Target, account: Account) -> None:
    """The call's input for this attempt's pair: items bound elsewhere left out."""
    binding = call.binding
    if binding is None or binding.full is None:
        return
    current = call.body.get("input")
    if current is not binding.full and current is not binding.sent:
        # A stage rewrote the input after it was loaded (item for item): that is the input.
        if not isinstance(current, list) or len(current) != len(binding.full):
            return
        binding.full = current
    sent = binding.input_for((target.provider.name, account.name))
    binding.sent = call.body["input"] = binding.full if sent is None else sent
    call.changed = True


def say(call: Call, headers: dict[str, str]) -> None:
    """The answer's header when a chained call could not go where its previous turn went."""
    target, account = call.target, call.account
    if target is not None and account is not None and counted(call.binding, target, account):
        headers[HEADER] = SWITCHED


def counted(binding: Binding | None, target: Target, account: Account) -> bool:
    """Count a chained request's outcome; whether it switched."""
    if binding is None or binding.prefer is None:
        return False
    switched = binding.switched((target.provider.name, account.name))
    metrics.AFFINITY.labels(SWITCHED if switched else "kept").inc()
    return switched
