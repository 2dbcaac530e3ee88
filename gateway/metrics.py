"""Prometheus metrics: what /metrics shows, multiprocess-safe when `serve --workers` > 1.

prometheus-client keeps metrics in one registry per process by design (and in files under
PROMETHEUS_MULTIPROC_DIR across workers), so they are module-level objects here.
Label values are bounded: operation names, configured model and provider names, classes.
"""

from __future__ import annotations

import os
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_GAPS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "gateway_requests_total",
    "Requests answered, by operation and outcome.",
    ["operation", "model", "provider", "status_class"],
)
DURATION = Histogram(
    "gateway_request_duration_seconds",
    "Time from request to the end of the answer (whole stream included).",
    ["operation"],
    buckets=_LATENCY,
)
OVERHEAD = Histogram(
    "gateway_overhead_seconds",
    "Time the gateway itself adds: the whole answer minus the upstream's part.",
    buckets=_OVERHEAD,
)
TTFB = Histogram(
    "gateway_stream_time_to_first_byte_seconds",
    "Time from request to the first streamed byte sent to the client.",
    ["provider"],
    buckets=_LATENCY,
)
GAPS = Histogram(
    "gateway_stream_chunk_interval_seconds",
    "Time between streamed chunks (between tokens, as the upstream sends them).",
    ["provider"],
    buckets=_GAPS,
)
OPEN_STREAMS = Gauge(
    "gateway_open_streams", "Streams being relayed now.", multiprocess_mode="livesum"
)
TOKENS = Counter(
    "gateway_tokens_total",
    "Tokens used, as the upstream reported them (gen_ai.token.type input or output).",
    ["model", "token_type"],
)
COST = Counter(
    "gateway_cost_usd_total", "Cost of settled requests, from models[].price.", ["model"]
)
LIMIT_REFUSALS = Counter(
    "gateway_limit_refusals_total",
    "Requests the gateway's own limits refused (not upstream 429s).",
    ["kind"],
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total", "Upstream failures, by kind.", ["provider", "kind"]
)
REDIS_ERRORS = Counter(
    "gateway_redis_errors_total",
    "Calls to Redis that failed, timed out or were refused, by operation.",
    ["operation"],
)
CLIENTS_GONE = Counter(
    "gateway_clients_gone_total", "Clients that left before the end of a stream."
)
JOBS = Counter(
    "gateway_jobs_total",
    "Background and async jobs, by what happened to them: submitted, retried, and how they "
    "ended (completed, incomplete, failed, cancelled).",
    ["event"],
)
GUARDRAIL_HITS = Counter(
    "gateway_guardrail_hits_total",
    "Guardrail matches, by rule name (configured) and action (redact, block, flag).",
    ["rule", "action"],
)
AFFINITY = Counter(
    "gateway_affinity_total",
    "Chained requests (previous_response_id, conversation) served where their previous turn "
    "was (kept), or moved because that account could not serve them (switched).",
    ["outcome"],
)
WEBSOCKETS = Gauge(
    "gateway_websocket_connections",
    "WebSocket connections open now (WebSocket mode on /responses).",
    multiprocess_mode="livesum",
)
WEBSOCKET_CREATES = Histogram(
    "gateway_websocket_creates_per_connection",
    "Creates (response.create events) a WebSocket connection carried, observed when it closed.",
    buckets=(0, 1, 2, 5, 10, 25, 50, 100, 250, 1000),
)


# Labelled children, looked up once per label set: `.labels()` takes a lock and checks its
# arguments on every call, which showed in the per-request cost.
_requests: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
_tokens: dict[str, tuple[Any, Any]] = {}
_costs: dict[str, Any] = {}
_streams: dict[tuple[Histogram, str], Histogram] = {}


def count_request(operation: str, model: str, provider: str, status: int, elapsed: float) -> None:
    key = (operation, model, provider, status // 100)
    found = _requests.get(key)
    if found is None:
        found = _requests[key] = (
            REQUESTS.labels(operation, model, provider, f"{key[3]}xx"),
            DURATION.labels(operation),
        )
    found[0].inc()
    found[1].observe(elapsed)


def count_tokens(model: str, input_tokens: int, output_tokens: int) -> None:
    found = _tokens.get(model)
    if found is None:
        found = _tokens[model] = (TOKENS.labels(model, "input"), TOKENS.labels(model, "output"))
    found[0].inc(input_tokens)
    found[1].inc(output_tokens)


def count_cost(model: str, usd: float) -> None:
    """A settled request's cost; only priced models (configured names) ever get a label."""
    if usd <= 0:
        return
    found = _costs.get(model)
    if found is None:
        found = _costs[model] = COST.labels(model)
    found.inc(usd)


def ttfb(provider: str) -> Histogram:
    """The time-to-first-byte histogram of one provider (a configured name)."""
    return _of_provider(TTFB, provider)


def gaps(provider: str) -> Histogram:
    """The between-chunks histogram of one provider's streams (a configured name)."""
    return _of_provider(GAPS, provider)


def _of_provider(family: Histogram, provider: str) -> Histogram:
    found = _streams.get((family, provider))
    if found is None:
        found = _streams[family, provider] = family.labels(provider)
    return found


def redis_error(operation: str) -> None:
    REDIS_ERRORS.labels(operation).inc()


def job(event: str) -> None:
    JOBS.labels(event).inc()


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def status_class(status: int) -> str:
    return f"{status // 100}xx"


_guardrail_hits: dict[tuple[str, str], Any] = {}


def guardrail_hit(rule: str, action: str) -> None:
    """A match of a rule (a configured name) and what it did."""
    found = _guardrail_hits.get((rule, action))
    if found is None:
        found = _guardrail_hits[rule, action] = GUARDRAIL_HITS.labels(rule, action)
    found.inc()
