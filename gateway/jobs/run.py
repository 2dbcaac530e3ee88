"""One run of a background job: the attempt engine's job sink, the event log, the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson

from gateway import events, metrics
from gateway.affinity import Affinity, Binding, served
from gateway.attempts import Attempts, aimed
from gateway.config import Account, KeySettings, Price, key_from_fields
from gateway.errors import GatewayError, UpstreamError, failed_event, response_error
from gateway.errors_upstream import UPSTREAM_ERRORS, cut_stream, status_error, upstream_failure
from gateway.guardrails.outbound import guard_reply, job_guard
from gateway.jobs import TERMINAL, Event, JobStore
from gateway.limits import Subject
from gateway.limits.usage import Usage
from gateway.models import Call, Deps
from gateway.pipeline.affinity import counted
from gateway.providers.base import Reply, UpstreamRequest
from gateway.routing import Target
from gateway.state import grow_conversation
from gateway.store import Json
from gateway.streaming.sse import SSEParser
from gateway.traceparent import incoming

log = logging.getLogger("gateway.jobs")


class JobRun:
    """One job's attempts: stream from the upstream, log every event, write the outcome once."""

    def __init__(self, deps: Deps, jobs: JobStore, job_id: str, job: Json) -> None:
        self.deps, self.jobs, self.job_id, self.job = deps, jobs, job_id, job
        self.ttl = int(job["ttl"])
        self.events_ttl = int(job.get("events_ttl", self.ttl))
        self.snapshot: Json = job["snapshot"]
        self.seq = -1
        self.attempt = 0  # counted in the job's record: runs on other replicas count too
        self.provider: str | None = None
        self.model: str | None = None
        self.served: tuple[Target, Account] | None = None  # the pair of the last attempt
        saved_binding = job.get("binding")
        self.binding = (
            Binding.restored(saved_binding, job["body"].get("input")) if saved_binding else None
        )
        # The response this run ended the job with: what it settles. None when another run
        # (a copy that reclaimed it) or nobody wrote the outcome: then this run charges nothing.
        self.outcome: Json | None = None
        self.guard = job_guard(deps.guardrails, job.get("guardrails"))

    async def run(self) -> None:
        error: GatewayError = UpstreamError("The job did not run.")
        max_attempts = self.deps.settings.routing.max_attempts
        while True:
            if not await self.start_attempt():
                return
            if self.attempt > max_attempts:
                await self._fail(error, f"gave up after {max_attempts} attempts: ")
                return
            try:
                # The upstream attempts run on in the engine; a run cut short (the store
                # failed, or the replica died) counts the attempts it made.
                await self._watched(JobAttempts(self).run())
                return
            except _Gone:
                return
            except GatewayError as exc:
                error = exc
                if exc.status < 500 and exc.status != 429:
                    await self._fail(exc)
                    return
                await self.retried(exc.message)

    async def start_attempt(self) -> bool:
        """Count the attempt, clear the event log of earlier ones, and say the job runs;
        False when the job is gone."""
        self.attempt = await self.jobs.start_attempt(self.job_id, self.ttl)
        if self.attempt == 0:
            return False
        self.seq = -1
        await self.jobs.write(
            self.job_id, "in_progress", {**self.snapshot, "status": "in_progress"}, self.ttl
        )
        return True

    async def retried(self, reason: str) -> None:
        log.warning("job %s attempt %d failed: %s", self.job_id, self.attempt, reason)
        metrics.job("retried")
        await asyncio.sleep(min(0.5 * self.attempt, 2))

    async def _watched(self, work: Any) -> None:
        """Run the attempt, stopping it within a quarter second once the job is cancelled."""
        task = asyncio.ensure_future(work)
        try:
            while not task.done():
                await asyncio.wait([task], timeout=0.25)
                if not task.done() and await self.jobs.status(self.job_id) == "cancelled":
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    self.outcome = await self._cancelled_response()
                    await self._log_end(self.outcome)
                    return
            task.result()
        finally:
            task.cancel()

    async def settle(self) -> None:
        """Charge the job's usage to the limits and budgets its submission was admitted by."""
        saved = self.job.get("ticket")
        response = self.outcome
        if not saved or response is None:
            return
        key = key_from_fields(saved["key"], saved["key"].get("sha256", ""))
        price = Price(**saved["price"]) if saved.get("price") else None
        governor = self.deps.governor
        ticket = governor.restore(
            Subject(key, tuple(saved["projects"]), saved["model"], price), saved
        )
        if self.guard is not None:
            ticket.guardrails = self.guard.names
        status = {"completed": 200, "incomplete": 200, "cancelled": 499}.get(
            str(response.get("status")), 502
        )
        await governor.settle(
            ticket,
            Usage.from_response(response),
            status=status,
            latency_ms=0.0,
            provider=self.provider,
            upstream_model=self.model,
        )

    def request(
        self, target: Target, account: Account, trace_headers: Mapping[str, str] | None
    ) -> UpstreamRequest:
        """The attempt's request: the job's body as submitted, aimed at `target`, without the
        context items bound to another account."""
        job = self.job
        body = dict(job["body"])
        aimed(body, target)
        if self.binding is not None:
            sent = self.binding.input_for((target.provider.name, account.name))
            if sent is not None:
                body["input"] = sent
        self.provider, self.model = target.provider.name, target.model
        self.served = (target, account)
        headers: Mapping[str, str] = job["headers"]
        return UpstreamRequest(
            body,
            None,
            target.model,
            True,
            headers,
            job["request_id"],
            incoming(headers.get("traceparent")),
            trace_headers,
            math.inf,
        )

    async def stream(self, reply: Reply, provider: str, request_id: str) -> None:
        """Log the answer's events; write the outcome at its terminal event."""
        if reply.chunks is None:
            raise status_error(reply.status, reply.body, provider, request_id)
        parser = SSEParser()
        while True:
            try:
                chunk = await anext(reply.chunks)
            except StopAsyncIteration:
                break
            except UPSTREAM_ERRORS as exc:
                raise upstream_failure(exc, provider) from exc
            final = await self._log_chunk(parser.feed(chunk))
            if final is not None:
                await self._finish(final)
                return
        raise cut_stream(provider)

    async def _log_chunk(self, frames: list[Any]) -> Json | None:
        logged, final = [], None
        for frame in frames:
            try:
                event = orjson.loads(frame.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            kind = str(event.get("type", ""))
            if kind in events.JOB_LIFECYCLE and isinstance(event.get("response"), dict):
                event["response"] = self._view(event["response"])
            self.seq = event["sequence_number"] = self.seq + 1
            logged.append(Event(self.seq, orjson.dumps(event), kind))
            if kind in events.TERMINAL:
                final = event["response"]
        await self.jobs.append_events(self.job_id, logged, self.events_ttl)
        return final

    def _view(self, response: Json) -> Json:
        """The upstream's response under the job's id and the fields the client asked for."""
        keep = (
            "id",
            "created_at",
            "background",
            "store",
            "previous_response_id",
            "conversation",
            "metadata",
            "model",
        )
        return {**response, **{k: self.snapshot[k] for k in keep if k in self.snapshot}}

    async def _finish(self, final: Json) -> None:
        status = str(final.get("status", "completed"))
        where = None
        if self.served is not None:
            target, account = self.served
            where = served(target.provider.name, account.name, target.model)
        if await self.jobs.write(self.job_id, status, final, self.ttl, served=where):
            if self.served is not None:
                counted(self.binding, *self.served)
            self.outcome = final
            metrics.job(status if status in TERMINAL else "completed")
            await grow_conversation(self._call(), final)

    def _call(self) -> Call:
        """The job as a Call, for the conversation it grows."""
        job = self.job
        call = Call(None, self.deps, job["request_id"], job["headers"])
        call.principal = KeySettings(id=str(job.get("key_id", job["owner"])), owner=job["owner"])
        call.conversation, call.input_items = job["conversation"], job["input_items"]
        call.binding = self.binding
        if self.served is not None:
            call.target, call.account = self.served
        return call

    async def _fail(self, error: GatewayError, prefix: str = "") -> None:
        failed = {
            **self.snapshot,
            "status": "failed",
            "error": response_error(error, prefix=prefix),
        }
        if await self.jobs.write(self.job_id, "failed", failed, self.ttl):
            self.outcome = failed
            metrics.job("failed")
            await self._log_end(failed)

    async def _cancelled_response(self) -> Json:
        (record,) = await self.deps.store.get_responses(self.job["owner"], [self.job_id])
        return record["response"] if record else {**self.snapshot, "status": "cancelled"}

    async def _log_end(self, response: Json) -> None:
        self.seq += 1
        event = failed_event(response, self.seq)
        await self.jobs.append_events(
            self.job_id, [Event(self.seq, orjson.dumps(event), events.FAILED)], self.events_ttl
        )


class _Gone(Exception):
    """The job was deleted while it ran: nothing is left to write."""


class JobAttempts(Attempts[None]):
    """A job's sink: every event of the answer goes to the job's event log. A pair may be
    tried again, and a retry backs off and counts in the job's record first."""

    def __init__(self, run: JobRun) -> None:
        deps = run.deps
        providers = deps.router.providers
        targets = tuple(Target(providers[p], m, w) for p, m, w in run.job["targets"])
        super().__init__(
            deps.router,
            deps.settings.routing,
            None,
            targets,
            model=run.snapshot.get("model", ""),
            again=True,
            used=run.attempt - 1,
            affinity=Affinity(str(run.job.get("key_id", "")), run.job["body"], run.binding),
        )
        self.job = run

    def request(
        self, target: Target, account: Account, trace_headers: Mapping[str, str] | None
    ) -> UpstreamRequest:
        return self.job.request(target, account, trace_headers)

    async def reply(self, reply: Reply, target: Target, sent: float) -> None:
        if self.job.guard is not None:
            reply = await guard_reply(self.job.guard, reply, {})
        await self.job.stream(reply, target.provider.name, self.job.job["request_id"])

    async def retrying(self, reason: str) -> None:
        await self.job.retried(f"upstream {reason}")
        if not await self.job.start_attempt():
            raise _Gone
