"""forward: hand the call to a target's provider; relay its stream or pass its JSON on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gateway import bifrost, metrics, origins
from gateway.attempts import Attempts, aimed
from gateway.codec import dumps, loads, raw_json_response
from gateway.config import Account
from gateway.errors import UpstreamError
from gateway.errors_upstream import credentials_failure, refusal_envelope, status_failure
from gateway.guardrails.outbound import guard_reply
from gateway.limits.usage import Usage
from gateway.models import Call
from gateway.pipeline import affinity
from gateway.pipeline.limit import estimated_usage
from gateway.providers.base import Reply, UpstreamRequest
from gateway.routing import Target
from gateway.state import client_fields, client_view, save
from gateway.streaming.relay import StreamTap, relay


async def forward(call: Call) -> web.StreamResponse:
    """Try targets, accounts, then fallback models, until one answers before any byte went out."""
    attempts = ClientAttempts(call)
    try:
        return await attempts.run()
    finally:
        call.upstream_s = attempts.waited_s


class ClientAttempts(Attempts[web.StreamResponse]):
    """The client's sink: each attempt aims the call; the answer is relayed or passed on."""

    def __init__(self, call: Call) -> None:
        deps = call.deps
        routing = deps.settings.routing
        super().__init__(
            deps.router,
            routing,
            call.route,
            call.targets,
            model=call.model,
            key=call.principal,
            deadline=time.monotonic() + routing.deadline_s,
            tracing=deps.tracing,
            affinity=affinity.for_call(call),
        )
        self.call = call

    def request(
        self, target: Target, account: Account, trace_headers: Mapping[str, str] | None
    ) -> UpstreamRequest:
        call = self.call
        call.route = self.route
        aim(call, target, account)
        affinity.aim(call, target, account)
        return UpstreamRequest(
            call.body,
            None if call.changed else call.raw,
            target.model,
            call.stream,
            call.headers,
            call.request_id,
            call.trace,
            trace_headers,
            self.deadline,
        )

    def only_provider(self) -> str | None:
        headers = self.call.headers
        return headers.get("x-provider") or headers.get("x-tfy-provider-name")

    async def reply(self, reply: Reply, target: Target, sent: float) -> web.StreamResponse:
        call = self.call
        headers = {
            "x-request-id": call.request_id,
            "x-gateway-provider": target.provider.name,
            "x-gateway-model": target.model,
        }
        if call.ticket is not None and call.ticket.headers:
            headers.update(call.ticket.headers)
        if call.guard is not None:
            reply = await guard_reply(call.guard, reply, headers)
        affinity.say(call, headers)
        if reply.chunks is not None:
            return await _stream(call, reply.chunks, target.provider.name, headers, sent)
        return await _answer(call, reply, headers)


def aim(call: Call, target: Target, account: Account) -> None:
    """Point the call at one target: its upstream model name, minus the provider's drop_fields."""
    call.target, call.account = target, account
    if aimed(call.body, target):
        call.changed = True


async def _stream(
    call: Call, chunks: AsyncIterator[bytes], provider: str, headers: dict[str, str], sent: float
) -> web.StreamResponse:
    assert call.request is not None
    # The client sees the gateway's view of the Response (`store` and the state it chained
    # on) in every lifecycle event, as it is kept, not the stateless upstream's.
    tap = StreamTap(client_fields(call) if call.stateful else None)
    stayed: bool | None = None  # None: the relay raised before the stream began
    try:
        response, _, stayed = await relay(
            call.request,
            chunks,
            provider,
            headers,
            call.deps.streams,
            on_terminal=origins.on_terminal(
                call,
                (lambda final: save(call, client_view(call, final))) if call.stateful else None,
            ),
            tap=tap,
            sink=call.sink,
        )
    except asyncio.CancelledError:
        stayed = False
        raise
    finally:
        # However the stream ended, a cancel (its client left) included: what it used.
        call.response = tap.response
        call.usage = Usage.from_response(call.response)
        if call.usage is None and (tap.created is not None or stayed is False):
            call.usage = estimated_usage(call, tap.deltas)
        if stayed is not None:
            # A client that left after its terminal event had the whole answer.
            call.status = 200 if stayed or tap.delivered else 499
            call.client_gone = not stayed
    if tap.first_chunk_at is not None and tap.first_write_at is not None:
        metrics.ttfb(provider).observe(tap.first_write_at - call.started)
        # What the gateway adds: before the upstream call, and between its first chunk and ours.
        call.overhead_s = (sent - call.started) + (tap.first_write_at - tap.first_chunk_at)
    return response


def client_left(call: Call) -> None:
    """The request was cancelled because its client hung up: settled as far as it got, with
    the upstream's usage if it came, else the input it was sent."""
    if not call.client_gone:  # a stream has said itself whether its answer had gone out
        call.status = 499
    call.client_gone = True
    if call.usage is None and call.target is not None:
        call.usage = estimated_usage(call, 0)


async def _answer(call: Call, reply: Reply, headers: dict[str, str]) -> web.Response:
    answered = answer(call, reply, headers)
    if call.usage is not None and call.route is not None and call.route.price is not None:
        cost = call.deps.governor.cost(call.route.price, call.usage)
        answered.headers["x-gateway-cost-usd"] = f"{cost:.8f}"
    if call.stateful and call.response is not None and answered.status < 300:
        await save(call, client_view(call, call.response))
        answered.body = dumps(call.response)
    if not call.store and answered.status < 300:
        origins.record(call, call.response)
    bifrost.add_fields(call, answered)
    return answered


def answer(call: Call, reply: Reply, headers: dict[str, str]) -> web.Response:
    """A buffered upstream answer: success and client errors pass through, faults become 502."""
    name = call.target.provider.name if call.target else "upstream"
    status = reply.status
    if status in (401, 403, 407):
        # The upstream refused the gateway's own credentials: not the caller's fault.
        raise credentials_failure(status, name)
    if status >= 500:
        raise status_failure(status, reply.body, name, call.request_id)
    call.status = status
    if status < 300:
        try:
            decoded = loads(reply.body)
        except ValueError:
            raise UpstreamError(
                f"The upstream provider {name!r} answered with invalid JSON."
            ) from None
        call.response = decoded if isinstance(decoded, dict) else None
        call.usage = Usage.from_response(call.response)
        return raw_json_response(reply.body, status, headers)
    for passed in ("retry-after", "retry-after-ms"):
        if passed in reply.headers:
            headers[passed] = reply.headers[passed]
    envelope = refusal_envelope(status, reply.body, name, call.request_id)
    return raw_json_response(dumps(envelope), status, headers)
