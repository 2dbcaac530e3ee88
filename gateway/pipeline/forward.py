"""forward: hand the call to a target's provider; relay its stream or pass its JSON on."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from contextlib import AbstractContextManager
from typing import Final

from aiohttp import web

from gateway import metrics
from gateway.codec import dumps, loads, raw_json_response
from gateway.config import Account, ModelSettings
from gateway.errors import (
    GatewayError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.errors_upstream import credentials_failure, refusal_envelope, status_failure
from gateway.models import Call, Target, Usage
from gateway.pipeline.limit import estimated_usage
from gateway.providers.base import Reply
from gateway.state import client_fields, client_view, save
from gateway.streaming.relay import StreamTap, relay


async def forward(call: Call) -> web.StreamResponse:
    """Try targets, accounts, then fallback models, until one answers before any byte went out."""
    attempts = Attempts(call)
    pair = attempts.next()
    if pair is None:
        raise attempts.exhausted()
    while True:
        target, account = pair
        aim(call, target, account)
        headers = {
            "x-request-id": call.request_id,
            "x-gateway-provider": target.provider.name,
            "x-gateway-model": target.model,
        }
        if call.ticket is not None and call.ticket.headers:
            headers.update(call.ticket.headers)
        sent = time.monotonic()
        try:
            with _attempt_span(call, target, attempts.count):
                async with target.provider.send(call, target, account) as reply:
                    if reply.chunks is not None:
                        return await _stream(call, reply, headers, sent)
                    call.upstream_s = time.monotonic() - sent
                    if not _retryable(reply.status):
                        return await _answer(call, reply, headers)
                    attempts.failed(target, account, _retry_after(reply), f"status_{reply.status}")
                    pair = attempts.next()
                    if pair is None:
                        return await _answer(call, reply, headers)
        except (UpstreamError, UpstreamTimeoutError) as exc:
            kind = "timeout" if isinstance(exc, UpstreamTimeoutError) else "error"
            attempts.failed(target, account, None, kind)
            pair = attempts.next()
            if pair is None:
                raise


class Attempts:
    """The (target, account) pairs to try, in order: the model's, then each fallback's."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.health = call.deps.router.health
        self.routing = call.deps.settings.routing
        self.deadline = time.monotonic() + self.routing.deadline_s
        self.tried: set[tuple[str, str, str]] = set()
        self.count = 0
        fallbacks = call.route.fallbacks if call.route else ()
        self.models: list[tuple[ModelSettings | None, tuple[Target, ...]]] = [
            (call.route, call.targets)
        ]
        self._fallbacks = list(fallbacks)

    def left(self) -> bool:
        return self.count < self.routing.max_attempts and time.monotonic() < self.deadline

    def next(self) -> tuple[Target, Account] | None:
        if not self.left():
            return None
        while self.models:
            route, targets = self.models[0]
            found = self.health.pick(targets, self.tried)
            if found is not None:
                self.count += 1
                self.tried.add((found[0].provider.name, found[0].model, found[1].name))
                if route is not self.call.route:
                    self.call.route = route
                return found
            self.models.pop(0)
            if not self.models:
                self._next_fallback()
        return None

    def _next_fallback(self) -> None:
        key = self.call.principal
        assert key is not None
        only = self.call.headers.get("x-provider") or self.call.headers.get("x-tfy-provider-name")
        while self._fallbacks:
            name = self._fallbacks.pop(0)
            try:
                self.models.append(self.call.deps.router.resolve(name, key, only))
                return
            except GatewayError:
                continue  # a fallback this caller may not use is skipped, not an error

    def failed(
        self, target: Target, account: Account, retry_after_s: float | None, kind: str
    ) -> None:
        metrics.UPSTREAM_ERRORS.labels(target.provider.name, kind).inc()
        self.health.fail(target, account, retry_after_s)

    def exhausted(self) -> GatewayError:
        wait = max(1, math.ceil(self.health.soonest(self.call.targets)))
        return ServiceUnavailableError(
            f"No account can serve the model '{self.call.model}' right now: every target is "
            "cooling down after failures.",
            code="no_accounts",
            headers={"retry-after": str(wait)},
        )


_NO_SPAN: Final = contextlib.nullcontext()


def _attempt_span(call: Call, target: Target, attempt: int) -> AbstractContextManager[object]:
    """The attempt's client span; with tracing off, a shared no-op (no generator per attempt)."""
    tracing = call.deps.tracing
    if tracing is None:
        return _NO_SPAN
    call.trace_headers = {}
    return tracing.upstream_span(target.provider.name, target.model, attempt, call.trace_headers)


def aim(call: Call, target: Target, account: Account) -> None:
    """Point the call at one target: its upstream model name, minus the provider's drop_fields."""
    call.target, call.account = target, account
    if call.body.get("model") != target.model:
        call.body["model"] = target.model
        call.changed = True
    for name in target.provider.settings.drop_fields:
        if call.body.pop(name, None) is not None:
            call.changed = True


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500 or status in (401, 403)


def _retry_after(reply: Reply) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = reply.headers.get(name)
        if raw is not None:
            try:
                return float(raw) * scale
            except ValueError:
                return None
    return None


async def _stream(
    call: Call, reply: Reply, headers: dict[str, str], sent: float
) -> web.StreamResponse:
    assert call.request is not None
    assert call.target is not None
    assert reply.chunks is not None
    # The client sees the gateway's view of the Response (`store` and the state it chained
    # on) in every lifecycle event, as it is kept, not the stateless upstream's.
    tap = StreamTap(client_fields(call) if call.stateful else None)
    stayed: bool | None = None  # None: the relay raised before the stream began
    try:
        response, _, stayed = await relay(
            call.request,
            reply.chunks,
            call.target.provider.name,
            headers,
            call.deps.streams,
            on_terminal=(
                (lambda final: save(call, client_view(call, final))) if call.stateful else None
            ),
            tap=tap,
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
        metrics.TTFB.labels(call.target.provider.name).observe(tap.first_write_at - call.started)
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
    return raw_json_response(dumps({"error": envelope}), status, headers)
