"""Every typed aiohttp app and request key, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.config import Settings
from gateway.traceparent import TraceContext

if TYPE_CHECKING:
    from gateway.jobs.worker import WorkerPool
    from gateway.models import Call, Deps

SETTINGS = web.AppKey("SETTINGS", Settings)
DEPS: web.AppKey[Deps] = web.AppKey("DEPS")
WORKERS: web.AppKey[WorkerPool] = web.AppKey("WORKERS")
DRAINING = web.AppKey("DRAINING", list)  # one element once SIGTERM came: readyz fails
REQUEST_ID = web.RequestKey("REQUEST_ID", str)
TRACE = web.RequestKey("TRACE", TraceContext)  # the W3C trace every request has
CALL: web.RequestKey[Call] = web.RequestKey("CALL")
CLIENT_GONE = web.RequestKey("CLIENT_GONE", bool)  # the client hung up before the end
SPAN_EXPORTER = web.AppKey("SPAN_EXPORTER", SpanExporter)
