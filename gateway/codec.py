"""orjson at the edges: read a JSON object from a request, answer JSON."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

JSON = "application/json"


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
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
    return body


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON, headers=headers)


def raw_json_response(
    body: bytes, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)
