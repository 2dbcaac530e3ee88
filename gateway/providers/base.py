"""The Provider protocol, what an upstream answers (Reply), and what every HTTP provider shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

from gateway.codec import dumps
from gateway.config import Account, ProviderSettings
from gateway.providers.transport import new_transport
from gateway.traceparent import TraceContext


class UpstreamRequest(NamedTuple):
    """One attempt at an upstream: all a provider reads, made once per attempt.

    Immutable like a frozen dataclass, but a NamedTuple: one is made on every request, and a
    tuple is built about four times faster than a frozen dataclass sets its fields.
    """

    body: dict[str, Any]  # the request, as the gateway aimed it at this upstream
    raw: bytes | None  # the client's own bytes, when nothing rewrote the JSON (the fast path)
    model: str  # the model's name at this upstream
    stream: bool
    headers: Mapping[str, str]  # the client's request headers, for the allow-listed few
    request_id: str
    trace: TraceContext  # the request's trace
    trace_headers: Mapping[str, str] | None  # the attempt span's context, with tracing on
    deadline: float  # time.monotonic() past which the gateway starts no other attempt

    def data(self) -> bytes:
        """The bytes to send: the client's own unless the gateway rewrote the JSON."""
        return self.raw if self.raw is not None else dumps(self.body)


@dataclass(slots=True)
class Reply:
    """An upstream's answer: a buffered body, or the chunks of a 200 event stream."""

    status: int
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    settings: ProviderSettings

    def send(
        self, request: UpstreamRequest, account: Account
    ) -> AbstractAsyncContextManager[Reply]: ...

    async def close(self) -> None: ...


USER_AGENT = "responses-gateway/0.1"


def upstream_headers(
    request: UpstreamRequest,
    account: Account,
    settings: ProviderSettings,
    forwarded: tuple[str, ...],
) -> dict[str, str]:
    """What an upstream request carries: the account's key, never the caller's, only the
    allow-listed client headers, and the request's trace context (the attempt's span's when
    tracing is on; otherwise the client's valid traceparent, or the trace the gateway began)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if request.stream else "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "X-Client-Request-Id": request.request_id,
    }
    incoming = request.headers
    for name in forwarded:
        value = incoming.get(name)
        if value is not None:
            headers[name] = value
    if request.trace_headers:
        headers.update(request.trace_headers)
    else:
        trace = request.trace
        headers["traceparent"] = trace.traceparent()
        # tracestate belongs to the client's trace: it goes only where that trace went.
        state = incoming.get("tracestate") if trace.from_client else None
        if state:
            headers["tracestate"] = state
    headers.update(auth_headers(account, settings))
    return headers


def auth_headers(account: Account, settings: ProviderSettings) -> dict[str, str]:
    """The account's key, in the header its provider expects."""
    if not account.api_key:
        return {}
    if settings.auth_header == "api-key":
        return {"api-key": account.api_key}
    return {"Authorization": f"Bearer {account.api_key}"}


class HTTPProvider:
    """What every provider that calls an upstream over HTTP shares: the pooled transport and
    the headers. Subclasses say which path they call and which client headers travel."""

    path: ClassVar[str]
    forwarded: ClassVar[tuple[str, ...]]

    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.http = new_transport(settings)

    async def close(self) -> None:
        await self.http.close()

    def headers(self, request: UpstreamRequest, account: Account) -> dict[str, str]:
        return upstream_headers(request, account, self.settings, self.forwarded)
