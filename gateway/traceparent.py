"""W3C trace context without the OpenTelemetry SDK: every request's trace id, and the
`traceparent` its upstream calls carry when no tracer makes one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import getrandbits
from typing import Final

# version-trace_id-parent_id-flags, lower-case hex only (W3C Trace Context, level 1).
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The request's trace: its id, the span upstream calls hang from, and its flags.

    `parent_id` is the client's span when the client sent a valid traceparent (the gateway
    records no span of its own without a tracer, so the upstream's span is the client's
    child), or None for a trace the gateway started.
    """

    trace_id: str
    flags: str = "00"
    parent_id: str | None = None

    @property
    def from_client(self) -> bool:
        return self.parent_id is not None

    def traceparent(self) -> str:
        """The header for an upstream call: the client's own span, or a fresh span id."""
        span = self.parent_id or f"{getrandbits(64) or 1:016x}"
        return f"00-{self.trace_id}-{span}-{self.flags}"


def new_trace() -> TraceContext:
    # A correlation id, not a secret: the process's PRNG spares a syscall per request.
    return TraceContext(f"{getrandbits(128) or 1:032x}")


def incoming(header: str | None) -> TraceContext:
    """The trace of a request: its valid `traceparent`'s, else a fresh one (never an error)."""
    if not header:
        return new_trace()
    value = header.strip()
    found = _TRACEPARENT.match(value)
    if found is None:
        return new_trace()
    version, trace_id, parent_id, flags = found.groups()
    # Version 00 is exactly 55 characters; a later version may append fields after a dash.
    rest = value[found.end() :]
    if version == "ff" or (rest and (version == "00" or rest[0] != "-")):
        return new_trace()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return new_trace()
    # Only the sampled bit is defined for version 00, which is what goes upstream.
    return TraceContext(trace_id, "01" if int(flags, 16) & 1 else "00", parent_id)
