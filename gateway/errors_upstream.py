"""Upstream failures mapped once: transport errors, error statuses and error bodies, as the
gateway's own errors; an upstream's error text scrubbed of anything that looks like a secret."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import aiohttp
import orjson

from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamTimeoutError,
    envelope,
)
from gateway.upstream_http import ConnectError, DisconnectedError, UpstreamHTTPError

log = logging.getLogger("gateway.upstream")

# What reading from an upstream can raise; anything else is not the upstream's fault.
UPSTREAM_ERRORS = (aiohttp.ClientError, UpstreamHTTPError, TimeoutError)
# What an attempt at an upstream raises once it is mapped: the next target may do better.
ATTEMPT_FAILURES = (UpstreamError, UpstreamTimeoutError)
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


def cut_stream(provider: str) -> UpstreamError:
    """The upstream's stream ended before its terminal event."""
    return UpstreamError(
        f"The upstream provider {provider!r} ended the stream before the response was complete."
    )


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
    """An upstream's 4xx as the client's error envelope: its envelope's message, type, param
    and code; for a body that is not an envelope, only the status."""
    found = upstream_envelope(body)
    if found is None:
        log_body(status, body, provider, request_id)
        return envelope(
            f"The upstream provider {provider!r} refused the request (status {status}).",
            "invalid_request_error",
            None,
            "upstream_error",
        )
    return envelope(found["message"], found["type"], found["param"], found["code"])


def status_error(status: int, body: bytes, provider: str, request_id: str) -> GatewayError:
    """Any error status as the gateway's error, for a caller that cannot pass the upstream's
    answer through (a background job): faults 502, the caller's own mistakes 400."""
    if status in (401, 403, 407):
        return credentials_failure(status, provider)
    if status >= 500 or status == 429:
        return status_failure(status, body, provider, request_id)
    refused = upstream_envelope(body)
    if refused is None:
        log_body(status, body, provider, request_id)
        return InvalidRequestError(
            f"The upstream provider {provider!r} refused the request (status {status}).",
            code="upstream_error",
        )
    return InvalidRequestError(refused["message"], param=refused["param"], code=refused["code"])


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
