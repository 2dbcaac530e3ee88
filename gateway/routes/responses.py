"""POST /responses: create a response, as JSON or as a stream."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway import pipeline
from gateway.keys import DEPS, REQUEST_ID
from gateway.models import Call
from gateway.pipeline import Stage
from gateway.pipeline.auth import authenticate
from gateway.pipeline.forward import forward
from gateway.pipeline.parse import parse_body
from gateway.pipeline.route import choose_model
from gateway.pipeline.validate import validate_create

CREATE_RESPONSE: Final[tuple[Stage, ...]] = (authenticate, parse_body, validate_create, choose_model)


async def create_response(request: web.Request) -> web.StreamResponse:
    call = Call(request, request.app[DEPS], request[REQUEST_ID])
    await pipeline.run(call, CREATE_RESPONSE)
    return await forward(call)
