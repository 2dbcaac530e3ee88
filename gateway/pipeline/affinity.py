"""A call's routing affinity: what the attempt engine prefers for it, the input each attempt
sends, and the header its answer carries (see gateway.affinity)."""

from __future__ import annotations

from gateway.affinity import HEADER, SWITCHED, Affinity
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
    sent = binding.input_for((target.provider.name, account.name))
    call.body["input"] = binding.full if sent is None else sent
    call.changed = True


def say(call: Call, headers: dict[str, str]) -> None:
    """The answer's header when a chained call could not go where its previous turn went."""
    binding, target, account = call.binding, call.target, call.account
    if (
        binding is not None
        and target is not None
        and account is not None
        and binding.switched((target.provider.name, account.name))
    ):
        headers[HEADER] = SWITCHED
