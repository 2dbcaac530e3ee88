"""govern: the caller's and the providers' request policies, before any state or upstream."""

from __future__ import annotations

from gateway.config import Policy
from gateway.models import Call
from gateway.pipeline.normalize import apply_policy, apply_provider_rules

_PASS = Policy()


async def apply_policies(call: Call) -> None:
    for policy in provider_policies(call, tools=True):
        if policy != _PASS and apply_policy(
            call.body,
            store=policy.store,
            truncation=policy.truncation,
            unknown_fields=policy.unknown_fields,
        ):
            call.changed = True


def provider_policies(call: Call, *, tools: bool) -> list[Policy]:
    """The key's policy and each target provider's (once per provider), after refusing what
    a provider refuses in the body: file ids, and its unsupported tools when `tools`."""
    assert call.principal is not None
    policies = [call.principal.policy]
    seen: set[str] = set()
    for target in call.targets:
        ps = target.provider.settings
        if ps.name in seen:
            continue
        seen.add(ps.name)
        policies.append(ps.policy)
        unsupported = ps.unsupported_tools if tools else ()
        if unsupported or ps.policy.file_ids == "refuse":
            apply_provider_rules(
                call.body,
                drop_fields=(),
                unsupported_tools=unsupported,
                refuse_file_ids=ps.policy.file_ids == "refuse",
            )
    return policies
