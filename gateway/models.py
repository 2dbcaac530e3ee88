"""Internal objects passed between stages: Deps (what the app owns) and Call (one request)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.codec import dumps
from gateway.config import Account, KeySettings, ModelSettings, Settings
from gateway.keys import TRACE
from gateway.streaming.drain import OpenStreams
from gateway.traceparent import TraceContext, incoming

if TYPE_CHECKING:
    from gateway.auth import KeyRing
    from gateway.backends import Backends
    from gateway.jobs import JobStore
    from gateway.limits import Governor, Ticket
    from gateway.pipeline.limit import Settler
    from gateway.providers.base import Provider
    from gateway.routing import Router
    from gateway.schemas import Validators
    from gateway.store import Store
    from gateway.tracing import Tracing


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    backends: Backends  # store, jobs and governor below are its, at hand
    store: Store
    keys: KeyRing
    router: Router
    validators: Validators
    jobs: JobStore
    governor: Governor
    settler: Settler
    tracing: Tracing | None = None
    streams: OpenStreams = field(default_factory=OpenStreams)  # what a drain must end


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be served: a provider and the model's name there."""

    provider: Provider
    model: str
    weight: float = 1.0


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False  # the gateway's estimate: the answer ended without its usage

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_response(cls, response: Any) -> Usage | None:
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return None
        details = usage.get("input_tokens_details") or {}
        return cls(
            input_tokens=_int(usage.get("input_tokens")),
            cached_tokens=_int(details.get("cached_tokens") if isinstance(details, dict) else 0),
            output_tokens=_int(usage.get("output_tokens")),
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(slots=True)
class Call:
    """One API request as it moves through the stages; stages fill it in."""

    request: web.Request | None  # None for a background job run by a worker
    deps: Deps
    request_id: str
    started: float = field(default_factory=time.monotonic)
    raw: bytes = b""
    body: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    principal: KeySettings | None = None
    model: str = ""
    stream: bool = False
    route: ModelSettings | None = None
    targets: tuple[Target, ...] = ()
    target: Target | None = None
    account: Account | None = None
    status: int = 0
    usage: Usage | None = None
    response: dict[str, Any] | None = None
    client_gone: bool = False
    async_job: bool = False  # sent with x-bf-async
    store: bool = False  # the gateway keeps this response
    previous: str | None = None  # previous_response_id, once found
    conversation: str | None = None  # conversation id, once found
    chain: list[str] = field(default_factory=list)
    input_items: list[dict[str, Any]] = field(default_factory=list)

    saved_headers: Mapping[str, str] = field(default_factory=dict)
    upstream_s: float | None = None  # JSON: time spent waiting on the upstream
    overhead_s: float | None = None  # streams: time the gateway added before the first byte
    ticket: Ticket | None = None  # what the limits reserved; settled once at the end
    trace_headers: dict[str, str] | None = None  # the upstream attempt span's trace context

    @property
    def headers(self) -> Mapping[str, str]:
        """The client's request headers (kept with a background job for its later run)."""
        return self.request.headers if self.request is not None else self.saved_headers

    @property
    def trace(self) -> TraceContext:
        """The request's trace (a background job's: the one its submission had)."""
        if self.request is not None and TRACE in self.request:
            return self.request[TRACE]
        return incoming(self.headers.get("traceparent"))

    @property
    def stateful(self) -> bool:
        return self.store or self.previous is not None or self.conversation is not None

    def upstream_body(self) -> bytes:
        """The bytes to send upstream: the client's own unless a stage rewrote the JSON."""
        return dumps(self.body) if self.changed else self.raw
