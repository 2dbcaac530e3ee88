"""orjson at the edges: read a JSON object from a request, answer JSON."""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

JSON = "application/json"

# orjson writes at most 254 levels; what the gateway wraps a body in (stored records, jobs,
# stream events, translated requests) needs the rest.
MAX_DEPTH = 240
_HEADROOM = 254 - MAX_DEPTH


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except (HttpProcessingError, web.RequestPayloadError):
        # The body's Content-Encoding (gzip, deflate, br, zstd) did not decode, or its
        # chunked framing broke.
        encoding = request.headers.get("Content-Encoding")
        if encoding:
            raise InvalidRequestError(
                f"The request body could not be decoded as Content-Encoding {encoding!r}.",
                code="invalid_content_encoding",
            ) from None
        raise InvalidRequestError(
            "The request body could not be read: its framing is broken.", code="invalid_body"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        raise PayloadTooLargeError(
            f"Request body is larger than the gateway's limit of {limit} bytes."
        ) from None


def parse_object(raw: bytes, content_type: str) -> dict[str, Any]:
    """The body as a JSON object, or a 400 (415 when it was not sent as JSON at all)."""
    if not raw:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request: the body is empty. "
            "Send a JSON object.",
            code="invalid_json",
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if content_type and "json" not in content_type:
            raise UnsupportedMediaTypeError(
                f"Unsupported content type {content_type!r}: send application/json."
            ) from None
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. "
            "(HINT: This likely means you aren't using your HTTP library correctly. "
            "The OpenAI API expects a JSON payload.)",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, got {type(body).__name__}.",
            code="invalid_type",
        )
    check_shape(raw, body)
    return body


def check_shape(raw: bytes, body: Any) -> None:
    """400 for a body nested deeper than MAX_DEPTH, or with a key twice in one object (the
    body is forwarded as sent, so a second `model` would be read by the upstream while the
    gateway authorised the first)."""
    wrapped = body
    for _ in range(_HEADROOM):
        wrapped = (wrapped,)
    try:
        encoded = orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        raise InvalidRequestError(
            f"The JSON body is nested deeper than {MAX_DEPTH} levels.",
            code="json_too_deep",
        ) from None
    # Outside strings a colon ends a key, and every string keeps its colons when re-encoded:
    # as many colons as re-encoded means no key was dropped. (A colon escaped as \u003a is
    # rare enough to take the slow path; `<` and `>` escaped as \u003c, \u003e are not colons:
    # one scan for their common prefix spares the body a second one.)
    escaped = b"\\u003" in raw and (b"\\u003a" in raw or b"\\u003A" in raw)
    if escaped or raw.count(b":") != encoded.count(b":"):
        key = duplicate_key(raw)
        if key is not None:
            raise InvalidRequestError(
                f"The JSON body has the key {key!r} more than once in one object.",
                param=key,
                code="duplicate_key",
            )


def duplicate_key(raw: bytes) -> str | None:
    """The first key found twice in one object of `raw` (valid JSON), or None."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items) and not found:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    found.append(key)
                    break
                seen.add(key)
        return obj

    json.loads(raw, object_pairs_hook=pairs)
    return found[0] if found else None


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON, headers=headers)


def raw_json_response(
    body: bytes, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)
