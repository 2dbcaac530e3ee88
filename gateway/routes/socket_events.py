"""What a socket's upgrade and client events mean as POST /responses creates: the key, the
headers each create reads, its body and its lane."""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from gateway.echo import response_object, usage_object
from gateway.errors import AuthenticationError, InvalidRequestError

SUBPROTOCOL_KEY: Final = "openai-insecure-api-key."
CREATE: Final = "response.create"
# Create fields that only frame the request on a socket and mean nothing upstream.
_SOCKET_ONLY: Final = ("type", "stream_id", "generate")
_MAX_STREAM_ID: Final = 256
# The `OpenAI-Beta` flag Codex sends to ask for WebSocket mode.
_SOCKET_BETA: Final = "responses_websockets"


def credentials(request: web.Request) -> tuple[str | None, str | None]:
    """The Authorization to check, and the subprotocol to select: a browser cannot set
    headers on a WebSocket, so the key may come as `openai-insecure-api-key.<key>`."""
    authorization = request.headers.get("Authorization")
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for protocol in (p.strip() for p in offered.split(",")):
        if protocol.startswith(SUBPROTOCOL_KEY):
            key = protocol.removeprefix(SUBPROTOCOL_KEY)
            if not key.isascii():
                raise AuthenticationError("The key in the WebSocket subprotocol is not ASCII.")
            return authorization or f"Bearer {key}", protocol
    return authorization, None


def create_headers(request: web.Request, authorization: str | None) -> CIMultiDict[str]:
    """The headers each create reads, as a POST's: the upgrade's, with the key it was
    authenticated by, less the beta flag that asked for the socket (the upstream call is
    plain HTTP)."""
    headers = CIMultiDict(request.headers)
    if authorization is not None:
        headers["Authorization"] = authorization
    beta = headers.get("OpenAI-Beta")
    if beta is not None:
        flags = (f.strip() for f in beta.split(","))
        kept = [f for f in flags if f and not f.startswith(_SOCKET_BETA)]
        del headers["OpenAI-Beta"]
        if kept:
            headers["OpenAI-Beta"] = ", ".join(kept)
    return headers


def create_body(event: dict[str, Any]) -> dict[str, Any]:
    """A `response.create` event's create parameters, as a streaming POST would send them."""
    kind = event.get("type")
    if kind != CREATE:
        raise InvalidRequestError(
            f"Unsupported client event type {kind!r}: this gateway serves only "
            f"'{CREATE}' events on this socket.",
            param="type",
            code="unsupported_event_type",
        )
    if event.get("background") is True:
        raise InvalidRequestError(
            "'background' is not supported over WebSocket: send it with POST /responses.",
            param="background",
            code="unsupported_parameter",
        )
    if not isinstance(event.get("generate", True), bool):
        raise InvalidRequestError(
            "Invalid type for 'generate': expected a boolean.",
            param="generate",
            code="invalid_type",
        )
    body = {k: v for k, v in event.items() if k not in _SOCKET_ONLY}
    body["stream"] = True  # implicit over a socket: the events are the answer
    return body


def stream_id(event: dict[str, Any]) -> str | None:
    """The lane a create names (`stream_id`), echoed in its events."""
    lane = event.get("stream_id")
    if lane is None:
        return None
    if not isinstance(lane, str) or not 0 < len(lane) <= _MAX_STREAM_ID:
        raise InvalidRequestError(
            f"Invalid 'stream_id': expected a string of 1 to {_MAX_STREAM_ID} characters.",
            param="stream_id",
            code="invalid_value",
        )
    return lane


def is_warmup(event: dict[str, Any]) -> bool:
    """`generate: false`: prepare the request (Codex sends one as each session opens, its
    instructions and tools in it), produce nothing."""
    return event.get("generate") is False


def warmup_response(body: dict[str, Any]) -> dict[str, Any]:
    """The Response a warm-up answers with: completed, no output, no tokens, an id of its own
    that the next create may name as `previous_response_id`."""
    return response_object(
        body,
        response_id="resp_" + secrets.token_hex(24),
        model=body.get("model"),
        created_at=int(time.time()),
        output=[],
        usage=usage_object(),
    )
