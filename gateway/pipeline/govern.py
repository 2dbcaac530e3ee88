"""govern: the caller's and the providers' request policies, before any state or upstream."""

from __future__ import annotations

from gateway.config import Policy
from gateway.models import Call
from gateway.pipeline.normalize import apply_policy, apply_provider_rules

_PASS = Policy()


async def apply_policies(call: Call) -> None:
    assert call.principal is not None
    policies = [call.principal.policy]
    seen: set[str] = set()
    for target in call.targets:
        ps = target.provider.settings
        if ps.name in seen:
            continue
        seen.add(ps.name)
        policies.append(ps.policy)
        if ps.unsupported_tools or ps.policy.file_ids == "refuse":
            apply_provider_rules(
                call.body,
                drop_fields=(),
                unsupported_tools=ps.unsupported_tools,
                refuse_file_ids=ps.policy.file_ids == "refuse",
            )
    for policy in policies:
        if policy != _PASS and apply_policy(
            call.body,
            store=policy.store,
            truncation=policy.truncation,
            unknown_fields=policy.unknown_fields,
        ):
            call.changed = True
