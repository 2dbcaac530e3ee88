"""Governor: admission (rates, tokens, concurrency, budgets) and usage accounting per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from random import getrandbits
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisClusterException, RedisError

from gateway import metrics
from gateway.config import ModelLimits, Price, ProjectLimits, Settings
from gateway.errors import ServiceUnavailableError
from gateway.limits import usage as accounting
from gateway.limits.backend import Charge, Settlement, Window
from gateway.limits.headers import rate_headers, refusal, too_large, unavailable
from gateway.limits.memory import MemoryLimiter
from gateway.limits.redis import RedisLimiter
from gateway.limits.rules import (
    Periods,
    Plan,
    Subject,
    nano,
    plan_for,
)
from gateway.limits.usage import Usage

log = logging.getLogger("gateway.limits")
T = TypeVar("T")
# A ticket and what its request came to: usage, status, latency, provider, upstream model.
SettleItem = tuple["Ticket", Usage | None, int, float, str | None, str | None]
_PLAN_CACHE_MAX = 4096


@dataclass(slots=True)
class Ticket:
    """What admit reserved, and where (redis, memory, or none: nothing to reserve)."""

    subject: Subject
    plan: Plan
    estimated_tokens: int
    lease_id: str
    backend: str = "none"
    bucket: int = 0  # the sub-bucket holding the token reservation
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    cost_usd: float = 0.0
    guardrails: str = ""  # the guardrail rules that matched, comma-separated


class Governor:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | redis.RedisCluster | None,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        projects: Mapping[str, ProjectLimits] | None = None,
        models: Mapping[str, ModelLimits] | None = None,
        lease_ttl_s: float = 120.0,
        window_s: float = 60.0,
        probe_interval_s: float = 1.0,
        concurrency_retry_ms: int = 1000,
        stream_max: int = 100_000,
    ) -> None:
        self.clock = clock
        # `limits.projects` and `limits.models` of the config, unless given here.
        self.projects = settings.limits.projects if projects is None else projects
        self.models = settings.limits.models if models is None else models
        self.window = Window(round(window_s * 1000), round(lease_ttl_s * 1000))
        self.memory = MemoryLimiter(self.window, clock, stream_max=stream_max)
        self.timeout_s = max(settings.limits.redis_timeout_ms, 1) / 1000
        self.redis = (
            None
            if redis_client is None
            else RedisLimiter(
                redis_client,
                prefix,
                self.window,
                timeout_s=self.timeout_s,
                stream_max=stream_max,
            )
        )
        self.fail_open = settings.limits.on_redis_error != "closed"
        self.probe_interval_s = probe_interval_s
        self.concurrency_retry_ms = concurrency_retry_ms
        self.fallbacks = 0  # calls the memory limiter served because Redis failed (for metrics)
        self.lost_settlements = 0  # settlements that reached no store (closed policy, Redis down)
        self._down_until = 0.0
        self._outage = False
        self._plans: dict[tuple[int, tuple[str, ...], str], tuple[object, Plan]] = {}
        self._periods = Periods()

    def _plan(self, subject: Subject) -> Plan:
        # Keyed by the KeySettings object itself (kept in the value, so its id is not reused):
        # hashing a whole Subject per request cost more than planning it.
        cache_key = (id(subject.key), subject.projects, subject.model)
        found = self._plans.get(cache_key)
        if found is not None and found[0] is subject.key:
            return found[1]
        if len(self._plans) >= _PLAN_CACHE_MAX:
            self._plans.clear()
        plan = plan_for(subject, self.projects, self.models)
        self._plans[cache_key] = (subject.key, plan)
        return plan

    async def admit(self, subject: Subject, estimated_tokens: int) -> Ticket:
        plan = self._plan(subject)
        est = max(0, int(estimated_tokens))
        # 64 random bits name the lease among every replica's; no getrandom call per request
        # (the random module reseeds itself in each forked worker)
        ticket = Ticket(subject, plan, est, f"{getrandbits(64):016x}" if plan.leases else "")
        if plan.empty:
            return ticket
        amounts = plan.amounts(est)
        hopeless = too_large(subject.model, plan, amounts, self.window)
        if hopeless is not None:
            raise hopeless
        now = self.clock()
        charges = [Charge(b, *self._periods.window(b.period, now)) for b in plan.budgets]
        lease_id, memory = ticket.lease_id, self.memory
        reply, ticket.backend = await self._run(
            "admit",
            lambda r: r.admit(plan, amounts, charges, lease_id),
            lambda: memory.admit(plan, amounts, charges, lease_id),
        )
        if not reply.admitted:
            raise refusal(
                subject.model, plan, reply, amounts, charges, self.window, self.concurrency_retry_ms
            )
        ticket.bucket = reply.bucket
        ticket.headers = rate_headers(plan, reply, amounts, self.window)
        return ticket

    def saved(self, ticket: Ticket) -> dict[str, Any]:
        """What another process needs to settle this ticket (a background job's run)."""
        return {
            "estimated_tokens": ticket.estimated_tokens,
            "lease_id": ticket.lease_id,
            "backend": ticket.backend,
            "bucket": ticket.bucket,
        }

    def restore(self, subject: Subject, saved: Mapping[str, Any]) -> Ticket:
        return Ticket(
            subject,
            self._plan(subject),
            int(saved["estimated_tokens"]),
            str(saved["lease_id"]),
            str(saved["backend"]),
            int(saved["bucket"]),
        )

    def headers(self, ticket: Ticket) -> dict[str, str]:
        return dict(ticket.headers)

    async def renew(self, ticket: Ticket) -> None:
        """Extend a long request's concurrency leases (call well within lease_ttl_s)."""
        leases, lease_id = ticket.plan.leases, ticket.lease_id
        if not leases or ticket.settled:
            return
        if ticket.backend == "memory" or self.redis is None:
            await self.memory.renew(leases, lease_id)
            return
        # While Redis is down the lease runs out by itself; nothing better to do.
        with contextlib.suppress(ServiceUnavailableError):
            await self._run("renew", lambda r: r.renew(leases, lease_id), _nothing)

    async def settle(
        self,
        ticket: Ticket,
        usage: Usage | None,
        *,
        status: int,
        latency_ms: float,
        provider: str | None,
        upstream_model: str | None,
    ) -> float:
        """Reconcile, release, charge and record; never raises for Redis; runs once per ticket."""
        await self.settle_many([(ticket, usage, status, latency_ms, provider, upstream_model)])
        return ticket.cost_usd

    async def settle_many(self, items: list[SettleItem]) -> None:
        """Settle several tickets; on Redis in one round trip."""
        shared: list[Settlement] = []
        for item in items:
            ticket = item[0]
            if ticket.settled:
                continue
            done = self._settlement(item)
            if self.redis is None:
                await self.memory.settle(done)
                continue
            if ticket.backend == "memory":
                await self.memory.settle(done.reservations())
                done = done.accounting()
            shared.append(done)
        if not shared:
            return
        memory = self.memory

        async def in_memory() -> None:
            for done in shared:
                await memory.settle(done.accounting())

        try:
            await self._run("settle", lambda r: r.settle_many(shared), in_memory)
        except ServiceUnavailableError:
            self.lost_settlements += len(shared)

    def _settlement(self, item: SettleItem) -> Settlement:
        ticket, usage = item[0], item[1]
        ticket.settled = True
        subject, plan = ticket.subject, ticket.plan
        usd = ticket.cost_usd = accounting.cost(subject.price, usage)
        metrics.count_cost(subject.model, usd)
        now = self.clock()
        done = Settlement(
            record=_record(item, usd, now),
            day=self._periods.day(now),
            totals=accounting.totals(subject.projects, subject.key.id, subject.model, usage, usd),
        )
        if plan.empty:  # the common case: nothing was reserved, only usage to record
            return done
        delta = 0 if usage is None else usage.total_tokens - ticket.estimated_tokens
        spend = nano(usd)
        done.adjust = tuple(
            (r, ticket.bucket, delta) for r in plan.rates if r.kind == "tokens" and delta
        )
        done.leases, done.lease_id = plan.leases, ticket.lease_id
        if spend > 0:
            done.charges = tuple(
                Charge(b, *self._periods.window(b.period, now), spend=spend) for b in plan.budgets
            )
        return done

    async def usage_report(
        self, project: str | None, day_from: date, day_to: date, group_by: str
    ) -> list[dict[str, object]]:
        days = accounting.days(day_from, day_to)
        if self.redis is None:
            found = await self.memory.day_totals(days)
        else:
            try:
                async with asyncio.timeout(max(1.0, self.timeout_s * 4)):  # many days
                    found = await self.redis.day_totals(days)
            except (RedisError, RedisClusterException, OSError) as exc:
                metrics.redis_error("usage_report")
                raise unavailable() from exc
        return accounting.report(days, found, project, group_by)

    def cost(self, price: Price | None, usage: Usage | None) -> float:
        return accounting.cost(price, usage)

    async def _run(
        self,
        operation: str,
        on_redis: Callable[[RedisLimiter], Awaitable[T]],
        on_memory: Callable[[], Awaitable[T]],
    ) -> tuple[T, str]:
        """Redis when it answers in time; else memory (`open`) or a 503 (`closed`)."""
        if self.redis is None:
            return await on_memory(), "memory"
        # After a failure, skip Redis for probe_interval_s so an outage doesn't cost every
        # request a timeout; the client reconnects by itself on the next try.
        if time.monotonic() >= self._down_until:
            try:  # RedisLimiter bounds each round trip by timeout_s itself
                result = await on_redis(self.redis)
            # asyncio's TimeoutError is an OSError; a Cluster client's own failures (no node
            # reachable, a slot no master serves) are RedisClusterExceptions
            except (RedisError, RedisClusterException, OSError) as exc:
                metrics.redis_error(operation)
                self._failed(exc)
            else:
                if self._outage:
                    self._outage = False
                    log.warning("Redis answers again: shared rate limits are back")
                return result, "redis"
        if not self.fail_open:
            raise unavailable()
        self.fallbacks += 1
        return await on_memory(), "memory"

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.probe_interval_s
        if not self._outage:
            self._outage = True
            then = "per-process limits take over" if self.fail_open else "refusing with 503"
            log.warning(
                "Redis unreachable for rate limits (%s: %s); %s until it answers",
                type(exc).__name__,
                exc,
                then,
            )


async def _nothing() -> None:
    return None


def _record(item: SettleItem, usd: float, now: float) -> dict[str, str]:
    """The request's entry in the usage stream."""
    ticket, usage, status, latency_ms, provider, upstream_model = item
    u = usage or Usage()
    s = ticket.subject
    return {
        "key": s.key.id,
        "projects": ",".join(s.projects),
        "model": s.model,
        "provider": provider or "",
        "upstream_model": upstream_model or "",
        "input_tokens": str(u.input_tokens),
        "cached_tokens": str(u.cached_tokens),
        "cache_write_tokens": str(u.cache_write_tokens),
        "output_tokens": str(u.output_tokens),
        "total_tokens": str(u.total_tokens),
        "estimated_tokens": str(ticket.estimated_tokens),
        "usage": "none" if usage is None else "estimated" if usage.estimated else "reported",
        "cost_usd": repr(usd),
        "latency_ms": f"{latency_ms:.1f}",
        "status": str(status),
        "time": f"{now:.3f}",
    } | ({"guardrails": ticket.guardrails} if ticket.guardrails else {})
