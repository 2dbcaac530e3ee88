"""choose_model: the requested model to the targets this caller may use."""

from __future__ import annotations

from gateway.models import Call


async def choose_model(call: Call) -> None:
    assert call.principal is not None
    headers = call.headers
    only = headers.get("x-provider") or headers.get("x-tfy-provider-name")
    call.route, call.targets = call.deps.router.resolve(call.model, call.principal, only)
