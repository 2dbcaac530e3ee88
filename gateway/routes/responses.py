"""/responses: create (JSON or stream), retrieve, delete, cancel, input_items, input_tokens."""

from __future__ import annotations

import math
from typing import Final

from aiohttp import web

from gateway import pipeline
from gateway.codec import dumps, json_response, parse_object, read_body
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.keys import DEPS, REQUEST_ID
from gateway.models import Call
from gateway.pipeline import Stage
from gateway.pipeline.auth import authenticate
from gateway.pipeline.forward import forward
from gateway.pipeline.govern import apply_policies
from gateway.pipeline.parse import parse_body
from gateway.pipeline.route import choose_model
from gateway.pipeline.validate import validate_create
from gateway.state import load_context
from gateway.store import Json, page_of
from gateway.routes.paging import list_object, page_params

CREATE_RESPONSE: Final[tuple[Stage, ...]] = (
    authenticate, parse_body, validate_create, choose_model, apply_policies, load_context,
)


async def create_response(request: web.Request) -> web.StreamResponse:
    call = Call(request, request.app[DEPS], request[REQUEST_ID])
    await pipeline.run(call, CREATE_RESPONSE)
    return await forward(call)


async def _stored(request: web.Request) -> Json:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    rid = request.match_info["response_id"]
    (record,) = await deps.store.get_responses(key.id, [rid])
    if record is None:
        raise response_not_found(rid)
    return record


def response_not_found(rid: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{rid}' not found.", param="response_id",
                         code="not_found")


async def retrieve_response(request: web.Request) -> web.Response:
    record = await _stored(request)
    if request.query.get("stream") == "true":
        raise InvalidRequestError(
            "This response cannot be streamed because it was not created with background=true.",
            param="stream", code="invalid_request_error",
        )
    return json_response(record["response"])


async def delete_response(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    rid = request.match_info["response_id"]
    if not await deps.store.delete_response(key.id, rid):
        raise response_not_found(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})


async def cancel_response(request: web.Request) -> web.Response:
    await _stored(request)
    raise InvalidRequestError("Only responses created with background=true can be cancelled.",
                              param="response_id", code="invalid_request_error")


async def list_input_items(request: web.Request) -> web.Response:
    after, limit, desc = page_params(request)
    record = await _stored(request)
    page = page_of(record.get("input", []), after=after, limit=limit, desc=desc)
    return json_response(list_object(page))


async def count_input_tokens(request: web.Request) -> web.Response:
    """A documented estimate: about four characters of the request's text per token."""
    deps = request.app[DEPS]
    await deps.keys.authenticate(request.headers.get("Authorization"))
    body = parse_object(await read_body(request), request.headers.get("Content-Type", ""))
    deps.validators.input_tokens(body)
    counted = {k: body.get(k) for k in ("input", "instructions", "tools", "text")
               if body.get(k) is not None}
    tokens = math.ceil(len(dumps(counted)) / 4) if counted else 0
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})
