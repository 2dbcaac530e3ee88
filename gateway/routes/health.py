"""/healthz: the process is up. /readyz: what it depends on answers (the store, and the job
queue there), and it is not draining."""

from __future__ import annotations

from aiohttp import web

from gateway import metrics
from gateway.codec import json_response
from gateway.errors import GatewayError
from gateway.keys import DEPS, DRAINING


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAINING]:
        return json_response({"status": "draining"}, 503)
    backends = request.app[DEPS].backends
    try:
        await backends.check()
    except GatewayError as exc:
        return json_response(
            {"status": "unavailable", "store": backends.kind, "reason": exc.message}, 503
        )
    return json_response({"status": "ok", "store": backends.kind})


async def serve_metrics(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
