"""The one middleware: request ids, and the one place an exception becomes an HTTP answer."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from random import getrandbits

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.codec import json_response
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    envelope,
    internal_error,
)
from gateway.keys import CALL, CLIENT_GONE, DEPS, REQUEST_ID, TRACE
from gateway.observability import observe
from gateway.traceparent import incoming
from gateway.tracing import mark_error, span_trace

log = logging.getLogger("gateway")

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

# The request headers the gateway reads; each must be text (UTF-8) to mean anything.
_READ_HEADERS = (
    "authorization",
    "attribution",
    "x-request-id",
    "x-provider",
    "x-tfy-provider-name",
    "x-bf-async",
    "x-bf-async-id",
    "x-bf-async-job-result-ttl",
    "x-bf-extra-fields",
    "traceparent",
    "tracestate",
)


def request_id(request: web.Request) -> str:
    sent = request.headers.get("x-request-id")
    if sent is not None and _CLIENT_ID.fullmatch(sent):
        return sent
    # A correlation id, not a secret: the process's PRNG (seeded from the OS, reseeded after
    # fork) spares every request a getrandom syscall.
    return f"req_{getrandbits(128):032x}"


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    over_limit: bool = getattr(request.protocol, "over_limit", False)
    rid = request_id(request)
    request[REQUEST_ID] = rid
    request[TRACE] = incoming(request.headers.get("traceparent"))
    error: BaseException | None = None
    tracing = request.app[DEPS].tracing if DEPS in request.app else None
    try:
        if over_limit:
            raise ServiceUnavailableError(
                "The gateway has too many open connections; retry shortly.",
                code="too_many_connections",
                headers={"retry-after": "1"},
            )
        check_headers(request)
        if tracing is None:
            response = await handler(request)
        else:
            name = (
                f"{request.method} {request.match_info.route.resource.canonical}"
                if request.match_info.route.resource
                else request.method
            )
            with tracing.request_span(name, request.headers) as span:
                span.set_attribute("gateway.request_id", rid)
                request[TRACE] = span_trace(span)
                response = await handler(request)
                mark_error(span, response.status)
    except GatewayError as exc:
        error = exc
        response = json_response(exc.envelope(), exc.status, exc.response_headers())
        if over_limit:
            response.force_close()
    except web.HTTPException as exc:
        response = _http_exception(request, exc)
    except asyncio.CancelledError:
        # The client hung up (aiohttp cancels the handler): logged and counted all the same.
        # (observe logs the call's own status when it has one: 200 if the answer had gone out.)
        request[CLIENT_GONE] = True
        observe(request, 499, started, None)
        request.pop(CALL, None)
        raise
    except Exception as exc:
        error = exc
        log.exception("unhandled error", extra={"request_id": rid})
        response = json_response(internal_error(), 500)
    if not response.prepared:
        response.headers["x-request-id"] = rid
    observe(request, response.status, started, error)
    # The Call points at the request: drop the way back, so reference counting frees both
    # instead of the cyclic GC (whose pauses showed in the p99).
    request.pop(CALL, None)
    return response


def check_headers(request: web.Request) -> None:
    """A header the gateway reads whose bytes are not UTF-8 (aiohttp hands them over as lone
    surrogates) is the client's error: 401 for Authorization, 400 naming the header else."""
    headers = request.headers
    for name in _READ_HEADERS:
        value = headers.get(name)
        if value is None or value.isascii():
            continue
        try:
            value.encode()
        except UnicodeEncodeError:
            if name == "authorization":
                raise AuthenticationError(
                    "The Authorization header is not valid UTF-8 text: "
                    "send 'Bearer <your gateway key>'."
                ) from None
            raise InvalidRequestError(
                f"The {name} header is not valid UTF-8 text.",
                param=name,
                code="invalid_header",
            ) from None


def _http_exception(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    """aiohttp's own answers (404, 405, 413, redirects) in the OpenAI envelope."""
    if exc.status < 400:
        return exc
    if exc.status == 404:
        message = f"Unknown request URL: {request.method} {request.path}."
        code = "unknown_url"
    elif exc.status == 405:
        message = f"Method {request.method} is not allowed on {request.path}."
        code = "method_not_allowed"
    elif exc.status == 413:
        message = "The request body is larger than the gateway's limit."
        code = "request_too_large"
    else:
        message, code = exc.reason, None
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return json_response(
        envelope(message, "invalid_request_error", None, code), exc.status, headers
    )
