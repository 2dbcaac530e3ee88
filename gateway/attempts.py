"""The attempt engine: which target and account to try, in what order and how often, and what
an upstream's answer or failure means for the next try.

`Attempts.run` picks a pair, sends the attempt's UpstreamRequest, and on a retryable status or
a transport failure cools the pair down and tries the next, within `routing.max_attempts` and
the deadline. A subclass is the sink the answer goes to: the client relay
(`pipeline.forward.ClientAttempts`) or a background job's event log (`jobs.worker.JobAttempts`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from gateway import metrics
from gateway.affinity import Affinity
from gateway.config import Account, KeySettings, ModelSettings, RoutingSettings
from gateway.errors import GatewayError, ServiceUnavailableError, UpstreamTimeoutError
from gateway.errors_upstream import ATTEMPT_FAILURES
from gateway.providers.base import Reply, UpstreamRequest
from gateway.routing import Router, Target, pick

if TYPE_CHECKING:
    from gateway.tracing import Tracing

T = TypeVar("T")
_NO_SPAN: Final = contextlib.nullcontext()


def retryable(status: int) -> bool:
    """An answer another account or target may do better on: throttled, failed, or the
    gateway's credentials refused."""
    return status == 429 or status >= 500 or status in (401, 403)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """How long the upstream asked to be left alone, in seconds, if it said."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return float(raw) * scale
            except ValueError:
                return None
    return None


def aimed(body: dict[str, Any], target: Target) -> bool:
    """Point a request body at one target: its upstream model name, minus the provider's
    drop_fields. Whether the body changed."""
    changed = False
    if body.get("model") != target.model:
        body["model"] = target.model
        changed = True
    for name in target.provider.settings.drop_fields:
        if body.pop(name, None) is not None:
            changed = True
    return changed


class Attempts(Generic[T]):
    """The (target, account) pairs to try, in order (the model's, then each fallback's), and
    the loop that tries them. Subclasses say what an attempt sends (`request`), where its
    answer goes (`reply`) and what happens before a later attempt (`retrying`).

    With `again`, a pair may be tried again and a cooling one is picked when nothing else is
    left (a background job has no client waiting to be told 503); without it, each pair is
    tried once and none left is `exhausted`.
    """

    def __init__(
        self,
        router: Router,
        routing: RoutingSettings,
        route: ModelSettings | None,
        targets: tuple[Target, ...],
        *,
        model: str,
        key: KeySettings | None = None,
        again: bool = False,
        used: int = 0,
        deadline: float = math.inf,
        tracing: Tracing | None = None,
        affinity: Affinity | None = None,
    ) -> None:
        self.router = router
        self.health = router.health
        self.max_attempts = routing.max_attempts
        self.deadline = deadline
        self.route = route
        self.targets = targets
        self.model = model
        self.key = key
        self.again = again
        self.tracing = tracing
        self.affinity = affinity  # where the request's chain and prompt would rather go
        self.count = used  # attempts made (a job's include those of its earlier runs)
        self.waited_s: float | None = None  # how long the last buffered answer took
        self.tried: set[tuple[str, str, str]] = set()
        self.models: list[tuple[ModelSettings | None, tuple[Target, ...]]] = [(route, targets)]
        self._fallbacks = list(route.fallbacks) if route is not None and key is not None else []

    def request(
        self, target: Target, account: Account, trace_headers: Mapping[str, str] | None
    ) -> UpstreamRequest:
        raise NotImplementedError

    async def reply(self, reply: Reply, target: Target, sent: float) -> T:
        """The answer of the attempt that ends the run: a stream, or a final buffered body."""
        raise NotImplementedError

    async def retrying(self, reason: str) -> None:
        """Before each attempt after the first; `reason` says why the last one failed."""

    def only_provider(self) -> str | None:
        """The one provider the caller asked for, which a fallback must be served by too."""
        return None

    async def run(self) -> T:
        """Try pairs until one answers before any byte of it went anywhere."""
        pair = self.next()
        if pair is None:
            raise self.exhausted()
        last = False
        while True:
            target, account = pair
            sent = time.monotonic()
            carrier: dict[str, str] | None = None if self.tracing is None else {}
            try:
                with self._span(target, carrier):
                    request = self.request(target, account, carrier)
                    async with target.provider.send(request, account) as reply:
                        if reply.chunks is not None:
                            return await self.reply(reply, target, sent)
                        self.waited_s = time.monotonic() - sent
                        if not retryable(reply.status):
                            return await self.reply(reply, target, sent)
                        reason = f"status_{reply.status}"
                        self.failed(target, account, retry_after(reply.headers), reason)
                        pair = self.next()
                        if pair is None:
                            # The last answer is the client's, as it is: its failure was
                            # counted just above, and must not be counted again below.
                            last = True
                            return await self.reply(reply, target, sent)
            except ATTEMPT_FAILURES as exc:
                if last:
                    raise
                reason = "timeout" if isinstance(exc, UpstreamTimeoutError) else "error"
                self.failed(target, account, None, reason)
                pair = self.next()
                if pair is None:
                    raise
            await self.retrying(reason)

    def left(self) -> bool:
        return self.count < self.max_attempts and time.monotonic() < self.deadline

    def next(self) -> tuple[Target, Account] | None:
        if not self.left():
            return None
        if self.again:
            self.count += 1
            return pick(self.targets, self.health, self.affinity)
        while self.models:
            route, targets = self.models[0]
            found = self.health.pick(targets, self.tried, self.affinity)
            if found is not None:
                self.count += 1
                self.tried.add((found[0].provider.name, found[0].model, found[1].name))
                self.route = route
                return found
            self.models.pop(0)
            if not self.models:
                self._next_fallback()
        return None

    def _next_fallback(self) -> None:
        if self.key is None:  # no caller to check a fallback's permissions for
            return
        only = self.only_provider()
        while self._fallbacks:
            name = self._fallbacks.pop(0)
            try:
                self.models.append(self.router.resolve(name, self.key, only))
                return
            except GatewayError:
                continue  # a fallback this caller may not use is skipped, not an error

    def failed(
        self, target: Target, account: Account, retry_after_s: float | None, kind: str
    ) -> None:
        metrics.UPSTREAM_ERRORS.labels(target.provider.name, kind).inc()
        self.health.fail(target, account, retry_after_s)

    def exhausted(self) -> GatewayError:
        wait = max(1, math.ceil(self.health.soonest(self.targets)))
        return ServiceUnavailableError(
            f"No account can serve the model '{self.model}' right now: every target is "
            "cooling down after failures.",
            code="no_accounts",
            headers={"retry-after": str(wait)},
        )

    def _span(
        self, target: Target, carrier: dict[str, str] | None
    ) -> AbstractContextManager[object]:
        """The attempt's client span; with tracing off, a shared no-op (no generator made)."""
        if self.tracing is None or carrier is None:
            return _NO_SPAN
        return self.tracing.upstream_span(target.provider.name, target.model, self.count, carrier)
