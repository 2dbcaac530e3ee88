"""/responses: create (JSON or stream), retrieve, delete, cancel, input_items, input_tokens."""

from __future__ import annotations

import asyncio
import math
from typing import Final

from aiohttp import web

from gateway import pipeline
from gateway.codec import dumps, json_response, parse_object, read_body
from gateway.config import KeySettings
from gateway.errors import GatewayError, InvalidRequestError, NotFoundError
from gateway.guardrails.inbound import guard_input
from gateway.jobs import TERMINAL, background
from gateway.keys import CALL, DEPS, REQUEST_ID, TRACE
from gateway.models import Call
from gateway.pipeline import Stage
from gateway.pipeline.auth import authenticate
from gateway.pipeline.forward import client_left, forward
from gateway.pipeline.govern import apply_policies
from gateway.pipeline.limit import admit, settle
from gateway.pipeline.parse import parse_body
from gateway.pipeline.route import choose_model
from gateway.pipeline.validate import validate_create
from gateway.routes.paging import list_object, page_params
from gateway.routing import pick
from gateway.state import load_context
from gateway.store import Json, page_of

CREATE_RESPONSE: Final[tuple[Stage, ...]] = (
    authenticate,
    parse_body,
    validate_create,
    choose_model,
    apply_policies,
    admit,
    load_context,
    guard_input,
)


async def create_response(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    call = Call(request, deps, request[REQUEST_ID], request.headers, request[TRACE])
    request[CALL] = call
    polled = request.headers.get("x-bf-async-id")
    if polled is not None:
        return await poll_async_job(call, polled)
    call.async_job = request.headers.get("x-bf-async", "").lower() == "true"
    job = False
    try:
        await pipeline.run(call, CREATE_RESPONSE)
        if call.async_job or call.body.get("background") is True:
            first = await _submit(call)
            job = True  # the job's run settles its own ticket, wherever it runs
            return await _submitted(call, first)
        response = await forward(call)
        call.status = call.status or response.status
        return response
    except GatewayError as exc:
        call.status = exc.status
        raise
    except asyncio.CancelledError:
        client_left(call)
        raise
    finally:
        # Synchronous (handed to the settler): a cancel cannot cut it short.
        if not job:
            settle(call)


async def _submit(call: Call) -> Json:
    deps, request = call.deps, call.request
    assert request is not None
    settings = deps.settings
    ttl = (
        _result_ttl(request, settings.jobs.result_ttl_s)
        if call.async_job
        else settings.store.response_ttl_s
    )
    return await background.submit(call, deps.jobs, call.body, ttl, settings.jobs.result_ttl_s)


async def _submitted(call: Call, first: Json) -> web.StreamResponse:
    """The answer to a queued job: its id, its first snapshot, or its stream (whose client
    may leave: the job goes on, and settles its own ticket)."""
    deps, request = call.deps, call.request
    assert request is not None
    headers = {"x-request-id": call.request_id}
    if call.async_job:
        headers["x-bf-async-id"] = first["id"]
        return json_response({"id": first["id"], "status": first["status"]}, 202, headers)
    if call.stream:
        return await background.follow(
            request, deps.store, deps.jobs, first["id"], -1, headers, deps.streams
        )
    return json_response(first)


def _result_ttl(request: web.Request, default: int) -> int:
    raw = request.headers.get("x-bf-async-job-result-ttl")
    if raw is None:
        return default
    try:
        ttl = int(raw)
    except ValueError:
        ttl = 0
    if not 1 <= ttl <= 30 * 24 * 3600:
        raise InvalidRequestError(
            f"Invalid x-bf-async-job-result-ttl: expected whole seconds from 1 to 2592000, got "
            f"{raw!r}.",
            param="x-bf-async-job-result-ttl",
        )
    return ttl


async def poll_async_job(call: Call, job_id: str) -> web.Response:
    """x-bf-async-id: the job's status while it runs, the whole Response once it has ended."""
    await authenticate(call)
    assert call.principal is not None
    (record,) = await call.deps.store.get_responses(call.principal.owner, [job_id])
    if record is None:
        raise NotFoundError(
            f"Async job with id '{job_id}' not found.", param="x-bf-async-id", code="not_found"
        )
    response = record["response"]
    headers = {"x-bf-async-id": job_id}
    if response.get("status") in TERMINAL:
        return json_response(response, headers=headers)
    return json_response({"id": job_id, "status": response.get("status")}, headers=headers)


async def _stored(request: web.Request) -> Json:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    rid = request.match_info["response_id"]
    (record,) = await deps.store.get_responses(key.owner, [rid])
    if record is None:
        raise response_not_found(rid)
    return record


def response_not_found(rid: str) -> NotFoundError:
    return NotFoundError(
        f"Response with id '{rid}' not found.", param="response_id", code="not_found"
    )


async def retrieve_response(request: web.Request) -> web.StreamResponse:
    record = await _stored(request)
    if request.query.get("stream") != "true":
        return json_response(record["response"])
    if not record.get("background"):
        raise InvalidRequestError(
            "This response cannot be streamed because it was not created with background=true.",
            param="stream",
            code="invalid_request_error",
        )
    raw_after = request.query.get("starting_after", "-1")
    try:
        after = int(raw_after)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid 'starting_after': expected an integer, got {raw_after!r}.",
            param="starting_after",
            code="invalid_type",
        ) from None
    deps = request.app[DEPS]
    return await background.follow(
        request,
        deps.store,
        deps.jobs,
        request.match_info["response_id"],
        after,
        {"x-request-id": request[REQUEST_ID]},
        deps.streams,
    )


async def delete_response(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    rid = request.match_info["response_id"]
    if not await deps.store.delete_response(key.owner, rid):
        raise response_not_found(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})


async def cancel_response(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    rid = request.match_info["response_id"]
    return json_response(await background.cancel(deps.store, deps.jobs, key.owner, rid))


async def list_input_items(request: web.Request) -> web.Response:
    after, limit, desc = page_params(request)
    record = await _stored(request)
    page = page_of(record.get("input", []), after=after, limit=limit, desc=desc)
    return json_response(list_object(page))


async def count_input_tokens(request: web.Request) -> web.Response:
    """The upstream's count where its API has one; else an estimate of about four characters
    of the request's text per token (nothing is fetched to run a tokenizer). Either counts the
    input the upstream would get on create: the stored context of a chained request too."""
    deps = request.app[DEPS]
    key = await deps.keys.authenticate(request.headers.get("Authorization"))
    body = parse_object(await read_body(request), request.headers.get("Content-Type", ""))
    deps.validators.input_tokens(body)
    if body.get("previous_response_id") is not None or body.get("conversation") is not None:
        body = await _with_context(request, key, body)
    model = body.get("model")
    if isinstance(model, str) and model:
        _, targets = deps.router.resolve(model, key)
        target, account = pick(targets, deps.router.health)
        count = getattr(target.provider, "count_tokens", None)
        tokens = (
            await count(body, target.model, account, request[TRACE].traceparent())
            if count is not None
            else None
        )
        if tokens is not None:
            return json_response({"object": "response.input_tokens", "input_tokens": tokens})
    counted = {
        k: body.get(k)
        for k in ("input", "instructions", "tools", "text")
        if body.get(k) is not None
    }
    tokens = math.ceil(len(dumps(counted)) / 4) if counted else 0
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})


async def _with_context(request: web.Request, key: KeySettings, body: Json) -> Json:
    """The body with its stored context in `input`, loaded as create loads it: a context the
    caller does not own is not found, exactly as on create."""
    call = Call(
        request,
        request.app[DEPS],
        request[REQUEST_ID],
        request.headers,
        request[TRACE],
        body=dict(body),
    )
    call.principal = key
    await load_context(call)
    counted = {k: v for k, v in body.items() if k not in ("previous_response_id", "conversation")}
    if "input" in call.body:
        counted["input"] = call.body["input"]
    return counted
