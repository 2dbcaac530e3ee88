"""create_app(settings): the application, its resources, middleware and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http import HttpVersion11
from opentelemetry.sdk.trace.export import SpanExporter

from gateway import origins
from gateway.auth import KeyRing
from gateway.backends import open_backends
from gateway.config import Settings
from gateway.guardrails.rules import guardrails_of
from gateway.jobs.worker import WorkerPool
from gateway.keys import DEPS, DRAINING, SETTINGS, SPAN_EXPORTER, WORKERS
from gateway.limits.settler import Settler
from gateway.middleware import gateway_middleware
from gateway.models import Deps
from gateway.providers import build_providers
from gateway.redact import guard_library_loggers
from gateway.routes import setup_routes
from gateway.routing import Router
from gateway.schemas import load_validators
from gateway.tracing import Tracing


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    providers = build_providers(settings)
    try:
        async with open_backends(settings) as backends:
            deps = Deps(
                settings=settings,
                backends=backends,
                store=backends.store,
                keys=KeyRing.for_app(settings, backends.keys),
                router=Router(settings, providers),
                validators=load_validators(),
                jobs=backends.jobs,
                governor=backends.limiter,
                settler=Settler(backends.limiter),
                tracing=_tracing(app),
                guardrails=guardrails_of(settings),
            )
            deps.settler.start()
            app[DEPS] = deps
            app[WORKERS] = pool = WorkerPool(deps, deps.jobs)
            pool.start()
            try:
                yield
            finally:
                await pool.stop(settings.server.shutdown_grace_s)
                await origins.flush()  # each a store round trip, bounded by its timeout
                await deps.settler.stop()
                if deps.tracing is not None:
                    deps.tracing.shutdown()
    finally:
        await asyncio.gather(*(p.close() for p in providers.values()))


def _tracing(app: web.Application) -> Tracing | None:
    settings = app[SETTINGS].tracing
    exporter = app.get(SPAN_EXPORTER)
    if settings.otlp_endpoint is None and exporter is None:
        return None
    return Tracing(settings, exporter)


def create_app(settings: Settings, span_exporter: SpanExporter | None = None) -> web.Application:
    """The gateway; `span_exporter` replaces OTLP export (tests look at the spans)."""
    guard_library_loggers()
    app = web.Application(
        middlewares=[gateway_middleware], client_max_size=settings.server.max_body_bytes
    )
    app[SETTINGS] = settings
    if span_exporter is not None:
        app[SPAN_EXPORTER] = span_exporter
    app[DRAINING] = []
    app.cleanup_ctx.append(_resources)
    setup_routes(app, settings)
    for route in app.router.routes():
        route._expect_handler = _expect
    return app


async def _expect(request: web.Request) -> None:
    """`Expect: 100-continue` lets the client send its body. Any other expectation is
    ignored (RFC 9110 allows it): aiohttp's own handler answered those with a plain-text
    417, and with a 500 when the header was not text, before the middleware could help."""
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11 and expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
