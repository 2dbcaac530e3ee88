"""Background responses and x-bf-async jobs: submit, poll, cancel, and stream (live or resumed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from gateway import events, metrics
from gateway.echo import echo
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    error_frame,
    failed_event,
)
from gateway.jobs import TERMINAL, Event, JobStore
from gateway.keys import CLIENT_GONE
from gateway.models import Call
from gateway.providers.responses import FORWARDED_HEADERS
from gateway.state import new_id
from gateway.store import Json, Store
from gateway.streaming.drain import OpenStreams
from gateway.streaming.relay import SSE_HEADERS


def snapshot(call: Call, client_body: Json, response_id: str) -> Json:
    """The Response a queued job is, before the upstream has said anything."""
    return {
        **echo(client_body),
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "queued",
        "background": True,
        "model": call.model,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "metadata": client_body.get("metadata") or {},
        "store": call.store,
        "previous_response_id": call.previous,
        "conversation": {"id": call.conversation} if call.conversation else None,
    }


def _saved_headers(call: Call) -> dict[str, str]:
    """The client headers the job's upstream calls carry, and the request's trace, so that
    they join it wherever the job runs."""
    headers = {k: v for k in FORWARDED_HEADERS if (v := call.headers.get(k)) is not None}
    trace = call.trace
    headers["traceparent"] = trace.traceparent()
    state = call.headers.get("tracestate") if trace.from_client else None
    if state:
        headers["tracestate"] = state
    return headers


async def submit(
    call: Call, jobs: JobStore, client_body: Json, ttl_s: int, events_ttl_s: int
) -> Json:
    """Queue the call as a job; answers its first snapshot (status queued)."""
    assert call.principal is not None
    if not call.store and not call.async_job:
        raise InvalidRequestError(
            "Background responses must be stored: 'store' cannot be false with 'background': true.",
            param="store",
        )
    rid = new_id("resp")
    body = dict(call.body)
    body.pop("background", None)
    body.update(stream=True, store=False)
    first = snapshot(call, client_body, rid)
    job = {
        "id": rid,
        "owner": call.principal.owner,
        "key_id": call.principal.id,
        "body": body,
        "ttl": ttl_s,
        "events_ttl": min(ttl_s, events_ttl_s),
        "targets": [[t.provider.name, t.model, t.weight] for t in call.targets],
        "headers": _saved_headers(call),
        "request_id": call.request_id,
        "snapshot": first,
        "conversation": call.conversation,
        "input_items": call.input_items,
        "chain": call.chain,
        "ticket": _saved_ticket(call),
        "guardrails": list(call.guard.policy.names) if call.guard is not None else None,
    }
    if call.binding is not None:
        job["binding"] = call.binding.saved()
    await jobs.enqueue(rid, job, first, ttl_s)
    metrics.job("submitted")
    return first


def _saved_ticket(call: Call) -> Json | None:
    ticket = call.ticket
    if ticket is None:
        return None
    subject = ticket.subject
    return {
        **call.deps.governor.saved(ticket),
        "key": asdict(subject.key),
        "projects": list(subject.projects),
        "model": subject.model,
        "price": asdict(subject.price) if subject.price else None,
    }


async def follow(
    request: web.Request,
    store: Store,
    jobs: JobStore,
    job_id: str,
    after: int,
    headers: dict[str, str],
    streams: OpenStreams,
) -> web.StreamResponse:
    """Stream a job's events after sequence number `after`, then live until its end."""
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    handle = streams.enter()
    try:
        return await _follow(response, store, jobs, job_id, after)
    except ConnectionResetError:
        request[CLIENT_GONE] = True  # the job goes on; its client may resume again
        return response
    except asyncio.CancelledError:
        if not handle.absorb():
            raise
        # Drained: the job goes on elsewhere; say where to pick the stream up again.
        ending = _error_frame("gateway_shutdown", "This gateway replica is shutting down", job_id)
    except GatewayError as exc:
        # The store failed under a stream already under way: end it with the reason, as an
        # event (the headers are sent); the job itself runs on once the store is back.
        ending = _error_frame(exc.code or "server_error", exc.message.rstrip("."), job_id)
    finally:
        streams.leave(handle)
    with contextlib.suppress(ConnectionResetError):
        await response.write(ending)
        await response.write_eof()
    return response


def _error_frame(code: str, reason: str, job_id: str) -> bytes:
    message = (
        f"{reason}; resume the stream with GET "
        f"/responses/{job_id}?stream=true&starting_after=<last sequence_number>."
    )
    return error_frame(GatewayError(message, code=code))


async def _follow(
    response: web.StreamResponse, store: Store, jobs: JobStore, job_id: str, after: int
) -> web.StreamResponse:
    cursor: Any = None
    while True:
        found, cursor = await jobs.read_events(job_id, cursor, block_ms=1000)
        for event in found:
            if event.seq <= after:
                continue
            after = event.seq
            await response.write(_frame(event))
            if event.kind in events.TERMINAL:
                await response.write_eof()
                return response
        if not found and await jobs.status(job_id) in TERMINAL:
            # The outcome was written without its event (a job cancelled while queued,
            # or whose replica died): end the stream from the record.
            found, cursor = await jobs.read_events(job_id, cursor, block_ms=0)
            if not any(e.kind in events.TERMINAL and e.seq > after for e in found):
                await response.write(await _closing_frame(store, jobs, job_id, after + 1))
                await response.write_eof()
                return response


def _frame(event: Event) -> bytes:
    return b"event: " + event.kind.encode() + b"\ndata: " + event.data + b"\n\n"


async def _closing_frame(store: Store, jobs: JobStore, job_id: str, seq: int) -> bytes:
    job = await jobs.get_job(job_id)
    owner = job["owner"] if job else ""
    (record,) = await store.get_responses(owner, [job_id])
    final = record["response"] if record else {"id": job_id, "status": "failed"}
    return _frame(Event(seq, orjson.dumps(failed_event(final, seq)), events.FAILED))


async def cancel(store: Store, jobs: JobStore, owner: str, job_id: str) -> Json:
    """Cancel a queued or running job; a finished one answers as it is (cancel is idempotent)."""
    (record,) = await store.get_responses(owner, [job_id])
    if record is None:
        raise NotFoundError(
            f"Response with id '{job_id}' not found.", param="response_id", code="not_found"
        )
    if not record.get("background"):
        raise InvalidRequestError(
            "Only responses created with background=true can be cancelled.",
            param="response_id",
            code="invalid_request_error",
        )
    job = await jobs.get_job(job_id)
    if job is not None:
        cancelled = {**record["response"], "status": "cancelled"}
        if await jobs.write(job_id, "cancelled", cancelled, int(job["ttl"])):
            metrics.job("cancelled")
        (record,) = await store.get_responses(owner, [job_id])
        assert record is not None
    response: Json = record["response"]
    return response
