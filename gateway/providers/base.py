"""The Provider protocol, what an upstream answers (Reply), and upstream failures mapped once."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import aiohttp
import orjson

from gateway.config import Account, ProviderSettings
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError
from gateway.providers.transport import new_transport
from gateway.upstream_http import ConnectError, DisconnectedError, UpstreamHTTPError

if TYPE_CHECKING:
    from gateway.models import Call, Target

log = logging.getLogger("gateway.upstream")

# What reading from an upstream can raise; anything else is not the upstream's fault.
UPSTREAM_ERRORS = (aiohttp.ClientError, UpstreamHTTPError, TimeoutError)
# An upstream's error message is shown to the client whole up to this many characters.
MAX_MESSAGE: Final = 4096
# What of an upstream's raw error body (or its transport error) a debug log line shows.
MAX_EXCERPT: Final = 500
# Credentials as they show up in error pages, headers echoed back and connection strings.
_SECRET: Final = re.compile(
    r"(?i)((?:bearer|basic)\s+|(?:api[-_]?key|authorization|token|secret|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?|://[^/\s:@]+:)[^\s\"'<>,;&@]+"
    r"|\bsk-[A-Za-z0-9_-]{6,}"
)


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
        self, call: Call, target: Target, account: Account
    ) -> AbstractAsyncContextManager[Reply]: ...

    async def close(self) -> None: ...


def upstream_failure(exc: BaseException, provider: str) -> GatewayError:
    """Translate what an upstream call raised into the gateway's 502/504.

    The exception's text names hosts and ports behind the gateway: it goes to the debug log,
    and the client gets what kind of failure it was.
    """
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"The upstream provider {provider!r} did not answer in time.")
    log.debug("upstream %r failed: %s", provider, excerpt(repr(exc)))
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectError):
        what = "could not be reached"
    elif isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | DisconnectedError
    ):
        what = "closed the connection before its answer was complete"
    else:
        what = f"failed ({type(exc).__name__})"
    return UpstreamError(f"The upstream provider {provider!r} {what}.")


def upstream_envelope(body: bytes) -> dict[str, Any] | None:
    """An upstream's OpenAI error envelope cut down to its four fields, or None when the body
    is not one: anything else an upstream puts in its error body stays behind the gateway."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    kind, param, code = error.get("type"), error.get("param"), error.get("code")
    return {
        "message": scrub(message[:MAX_MESSAGE]),
        "type": kind if isinstance(kind, str) and kind else "invalid_request_error",
        "param": param if isinstance(param, str) else None,
        "code": str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
    }


def credentials_failure(status: int, provider: str) -> GatewayError:
    """The upstream refused the gateway's own credentials: not the caller's fault."""
    return UpstreamError(
        f"The upstream provider {provider!r} refused the gateway's credentials (status {status})."
    )


def status_failure(
    status: int, body: bytes, provider: str, request_id: str | None = None
) -> GatewayError:
    """An upstream's 5xx (or any answer that is its fault) as the gateway's 502: the message
    of the upstream's envelope when it sent one, else only the status."""
    envelope = upstream_envelope(body)
    if envelope is not None:
        return UpstreamError(
            f"The upstream provider {provider!r} returned an error (status {status}): "
            f"{envelope['message']}"
        )
    log_body(status, body, provider, request_id)
    return UpstreamError(f"The upstream provider {provider!r} returned an error (status {status}).")


def refusal_envelope(
    status: int, body: bytes, provider: str, request_id: str | None = None
) -> dict[str, Any]:
    """An upstream's 4xx as the client's error: its envelope's message, type, param and code;
    for a body that is not an envelope, only the status."""
    envelope = upstream_envelope(body)
    if envelope is None:
        log_body(status, body, provider, request_id)
        return {
            "message": f"The upstream provider {provider!r} refused the request (status {status}).",
            "type": "invalid_request_error",
            "param": None,
            "code": "upstream_error",
        }
    return envelope


def log_body(status: int, body: bytes, provider: str, request_id: str | None) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "upstream %r answered status %d: %s",
            provider,
            status,
            excerpt(body[:MAX_EXCERPT].decode(errors="replace")),
            extra={"request_id": request_id} if request_id else None,
        )


def excerpt(text: str) -> str:
    return scrub(text[:MAX_EXCERPT])


def scrub(text: str) -> str:
    """The text with anything that looks like a credential replaced by [REDACTED]."""
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[REDACTED]", text)


USER_AGENT = "responses-gateway/0.1"


def upstream_headers(
    call: Call, account: Account, settings: ProviderSettings, forwarded: tuple[str, ...]
) -> dict[str, str]:
    """What an upstream request carries: the account's key, never the caller's, only the
    allow-listed client headers, and the request's trace context (the attempt's span's when
    tracing is on; otherwise the client's valid traceparent, or the trace the gateway began)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if call.stream else "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        "X-Client-Request-Id": call.request_id,
    }
    incoming = call.headers
    for name in forwarded:
        value = incoming.get(name)
        if value is not None:
            headers[name] = value
    if call.trace_headers:
        headers.update(call.trace_headers)
    else:
        trace = call.trace
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

    def headers(self, call: Call, account: Account) -> dict[str, str]:
        return upstream_headers(call, account, self.settings, self.forwarded)
