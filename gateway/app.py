"""create_app(settings): the application, its resources, middleware and routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.auth import KeyRing
from gateway.config import Settings
from gateway.jobs import open_jobs
from gateway.jobs.worker import WorkerPool
from gateway.limits import Governor
from gateway.keys import DEPS, DRAINING, SETTINGS, WORKERS
from gateway.middleware import gateway_middleware
from gateway.models import Deps
from gateway.providers import build_providers
from gateway.routes import setup_routes
from gateway.routing import Router
from gateway.schemas import load_validators
from gateway.store import open_store


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    providers = build_providers(settings)
    try:
        async with open_store(settings) as store:
            deps = Deps(
                settings=settings,
                store=store,
                keys=KeyRing.for_app(settings, store),
                router=Router(settings, providers),
                validators=load_validators(),
                jobs=open_jobs(store),
                governor=Governor(
                    settings, getattr(store, "client", None), settings.store.prefix,
                    projects=settings.limits.projects, models=settings.limits.models,
                ),
            )
            app[DEPS] = deps
            app[WORKERS] = pool = WorkerPool(deps, deps.jobs)
            pool.start()
            try:
                yield
            finally:
                await pool.stop(settings.server.shutdown_grace_s)
                await asyncio.gather(*list(deps.pending), return_exceptions=True)
    finally:
        await asyncio.gather(*(p.close() for p in providers.values()))


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[gateway_middleware], client_max_size=settings.server.max_body_bytes
    )
    app[SETTINGS] = settings
    app[DRAINING] = []
    app.cleanup_ctx.append(_resources)
    setup_routes(app, settings)
    return app
