"""GET /admin/stats: this process's live state, read from what it already counts.

Requests and errors come from the `gateway_requests_total` counter (API routes only: no health,
metrics, admin or console requests), open streams from the `gateway_open_streams` gauge, and
jobs from the worker pool and the job queue. Everything but the queue length is per process:
the answer names the process (`replica`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from gateway import metrics
from gateway.codec import json_response
from gateway.errors import GatewayError
from gateway.keys import DEPS, SETTINGS, WORKERS
from gateway.routes.admin import require_admin

WINDOW_S: Final = 10.0  # rates cover about the last this many seconds
MIN_WINDOW_S: Final = 1.0  # a shorter gap than this falls back to the whole uptime
QUEUE_TIMEOUT_S: Final = 1.0  # a store that does not answer by then: the queue length is unknown
JOB_EVENTS: Final = ("submitted", "retried", "completed", "incomplete", "failed", "cancelled")

_STARTED_AT: Final = time.time()
_STARTED: Final = time.monotonic()


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.monotonic()
    total: int
    client_errors: int  # 4xx
    server_errors: int  # 5xx


class Rates:
    """Request rates over a sliding window, from the counter's totals sampled on each look."""

    def __init__(self, started: float) -> None:
        self.origin = Sample(started, 0, 0, 0)
        self.samples: deque[Sample] = deque()

    def add(self, now: Sample) -> tuple[Sample, Sample]:
        """The sample to measure from, and `now` (kept for later looks)."""
        while self.samples and now.at - self.samples[0].at > WINDOW_S:
            self.samples.popleft()
        base = self.samples[0] if self.samples else self.origin
        if now.at - base.at < MIN_WINDOW_S:
            base = self.origin
        self.samples.append(now)
        return base, now


_RATES = Rates(_STARTED)


def api_operations(app: web.Application) -> frozenset[str]:
    """Handler names of the routes under the API mounts: the traffic the rates describe."""
    mounts = tuple(p.rstrip("/") + "/" for p in app[SETTINGS].server.mounts)
    names: set[str] = set()
    for resource in app.router.resources():
        if resource.canonical.startswith(mounts):
            names.update(getattr(route.handler, "__name__", "") for route in resource)
    return frozenset(names)


def request_totals(operations: frozenset[str]) -> tuple[int, int, int]:
    """Answers counted so far in this process: all, 4xx, 5xx."""
    total = client = server = 0
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels["operation"] not in operations:
                continue
            count = int(sample.value)
            total += count
            status = sample.labels["status_class"]
            if status == "4xx":
                client += count
            elif status == "5xx":
                server += count
    return total, client, server


def _gauge(metric: Any) -> int:
    return sum(int(s.value) for family in metric.collect() for s in family.samples)


def job_counts() -> dict[str, int]:
    counts = dict.fromkeys(JOB_EVENTS, 0)
    for family in metrics.JOBS.collect():
        for sample in family.samples:
            event = sample.labels.get("event")
            if sample.name.endswith("_total") and event in counts:
                counts[event] += int(sample.value)
    return counts


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def admin_stats(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app
    total, client, server = request_totals(api_operations(app))
    base, now = _RATES.add(Sample(time.monotonic(), total, client, server))
    window = now.at - base.at
    answered = now.total - base.total
    queued: int | None
    try:
        async with asyncio.timeout(QUEUE_TIMEOUT_S):
            queued = await app[DEPS].jobs.queued()
    except (GatewayError, TimeoutError):
        queued = None  # the queue's store does not answer: unknown, not zero
    pool = app.get(WORKERS)
    running = len(pool.running) if pool is not None else 0
    return json_response(
        {
            "object": "gateway.stats",
            "scope": "process",
            "replica": {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": int(_STARTED_AT),
                "uptime_s": round(now.at - _STARTED, 1),
            },
            "requests": {
                "total": total,
                "client_errors": client,
                "server_errors": server,
                "window_s": round(window, 1),
                "per_second": _rate(answered, window),
                "error_rate": _share(now.server_errors - base.server_errors, answered),
                "client_error_rate": _share(now.client_errors - base.client_errors, answered),
            },
            "streams": {"open": _gauge(metrics.OPEN_STREAMS)},
            "jobs": {
                "queued": queued,
                "running": running,
                "workers": pool.size if pool is not None else 0,
                **job_counts(),
            },
        }
    )
