"""Internal objects passed between stages: Deps (what the app owns) and Call (one request)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.codec import dumps
from gateway.config import Account, KeySettings, ModelSettings, Settings
from gateway.streaming.drain import OpenStreams
from gateway.streaming.sink import Sink
from gateway.streaming.sockets import OpenSockets
from gateway.traceparent import TraceContext, new_trace

if TYPE_CHECKING:
    from gateway.affinity import Binding
    from gateway.auth import KeyRing
    from gateway.backends import Backends
    from gateway.guardrails.guard import Guard
    from gateway.guardrails.rules import Guardrails
    from gateway.jobs import JobStore
    from gateway.limits import Governor, Ticket
    from gateway.limits.settler import Settler
    from gateway.limits.usage import Usage
    from gateway.routing import Router, Target
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
    sockets: OpenSockets = field(default_factory=OpenSockets)  # open WebSockets, watched
    guardrails: Guardrails | None = None  # the compiled `guardrails:` rules, None without


@dataclass(slots=True)
class Call:
    """One API request as it moves through the stages; stages fill it in."""

    request: web.Request | None  # None for a background job run by a worker
    deps: Deps
    request_id: str
    # The client's request headers and its trace (a background job's: its submission's).
    headers: Mapping[str, str] = field(default_factory=dict)
    trace: TraceContext = field(default_factory=new_trace)
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

    upstream_s: float | None = None  # JSON: time spent waiting on the upstream
    overhead_s: float | None = None  # streams: time the gateway added before the first byte
    ticket: Ticket | None = None  # what the limits reserved; settled once at the end
    guard: Guard | None = None  # the guardrails that apply, decided once at admission
    binding: Binding | None = None  # a chained request's ties to where its context was made
    sink: Sink | None = None  # where a stream goes, when not an SSE answer (a WebSocket's frames)

    @property
    def stateful(self) -> bool:
        return self.store or self.previous is not None or self.conversation is not None

    def upstream_body(self) -> bytes:
        """The bytes to send upstream: the client's own unless a stage rewrote the JSON."""
        return dumps(self.body) if self.changed else self.raw
