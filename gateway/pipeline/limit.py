"""admit: rate limits, concurrency and budgets for the key, its projects and the model.

`settle` is the other half: reconcile the reservation with the real usage, record it, and
charge its cost, once per request, whatever happened (a stream that failed or a client
that left included).
"""

from __future__ import annotations

import time
from typing import Final

from gateway.errors import PermissionDeniedError
from gateway.limits import Subject
from gateway.limits.usage import Usage
from gateway.models import Call

DEFAULT_OUTPUT_TOKENS: Final = 1024  # reserved when the request sets no max_output_tokens


def attribution(call: Call) -> tuple[str, ...]:
    """The projects a request charges: the `attribution` header's, or the key's own."""
    key = call.principal
    assert key is not None
    header = call.headers.get("attribution")
    if not header:
        return (key.project,) if key.project else ()
    asked = tuple(dict.fromkeys(p.strip() for p in header.split(",") if p.strip()))
    allowed = key.projects or ((key.project,) if key.project else ())
    for project in asked:
        if project not in allowed:
            raise PermissionDeniedError(
                f"This key may not charge project '{project}'; it may charge: "
                f"{', '.join(allowed) or 'no project'}.",
                param="attribution",
                code="project_not_allowed",
            )
    return asked


def estimate(call: Call) -> int:
    limit = call.body.get("max_output_tokens")
    output = limit if isinstance(limit, int) and limit > 0 else DEFAULT_OUTPUT_TOKENS
    return len(call.raw) // 4 + output


def estimated_usage(call: Call, output_tokens: int) -> Usage:
    """What an answer that ended without the upstream's usage is charged: the input it sent
    upstream (a quarter of its bytes, stored context included) and the output it relayed."""
    return Usage(
        input_tokens=len(call.upstream_body()) // 4, output_tokens=output_tokens, estimated=True
    )


async def admit(call: Call) -> None:
    assert call.principal is not None
    subject = Subject(
        call.principal,
        attribution(call),
        call.route.name if call.route else call.model,
        call.route.price if call.route else None,
    )
    call.ticket = await call.deps.governor.admit(subject, estimate(call))


def settle(call: Call) -> None:
    """Hand the ticket to the settler: the answer goes out without waiting for Redis, and a
    client that leaves cannot cancel the accounting."""
    ticket = call.ticket
    if ticket is None or ticket.settled:
        return
    if call.guard is not None:
        ticket.guardrails = call.guard.names
        call.usage = call.usage or call.guard.withheld
    target = call.target
    call.deps.settler.submit(
        (
            ticket,
            call.usage,
            call.status or 500,
            (time.monotonic() - call.started) * 1000,
            target.provider.name if target else None,
            target.model if target else None,
        )
    )
