"""setup_routes(app): the route table, repeated under every mount prefix."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Settings
from gateway.routes.health import healthz, readyz
from gateway.routes.models import list_models, retrieve_model
from gateway.routes.responses import create_response


def setup_routes(app: web.Application, settings: Settings) -> None:
    router = app.router
    router.add_get("/healthz", healthz, allow_head=False)
    router.add_get("/readyz", readyz, allow_head=False)
    for mount in settings.server.mounts:
        router.add_post(f"{mount}/responses", create_response)
        router.add_get(f"{mount}/models", list_models, allow_head=False)
        router.add_get(mount + "/models/{model:.+}", retrieve_model, allow_head=False)
